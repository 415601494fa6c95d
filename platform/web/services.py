"""The service base of a resource: create, read, update and delete in the request's session.

Not ``from __future__ import annotations``: Litestar reads ``NamedDependency`` at runtime.
"""

import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from advanced_alchemy.exceptions import NotFoundError
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.security.callers import AuthUser
from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.actions import Action
from atrium.platform.web.bodies import refuse_nul_characters
from atrium.platform.web.concurrency import if_match_allows, next_updated_at, precondition_failed, row_tag
from atrium.platform.web.db_errors import integrity_problem
from atrium.platform.web.errors import problem
from atrium.tenants.base import TenantBase

M = TypeVar("M", bound=TenantBase)


def not_found(model: type[Any]) -> Exception:
    return problem(404, f"No such {model.__tablename__.replace('_', ' ')} row.")


_LOCKED: dict[str, Any] = {"with_for_update": True, "execution_options": {"populate_existing": True}}


@cache
def repository_for(model: type[Any]) -> type[SQLAlchemyAsyncRepository[Any]]:
    """advanced-alchemy's repository for ``model``, made once per model."""
    return type(f"{model.__name__}Repository", (SQLAlchemyAsyncRepository,), {"model_type": model})


@dataclass
class CrudService(Generic[M]):
    """Create, read, update and delete one resource inside the request's transaction.

    Subclasses override the ``prepare_*`` and ``before_delete`` hooks. Writes commit
    explicitly, so a failed commit is the client's error response, never a lost write
    behind a 2xx.
    """

    session: AsyncSession
    tenant: NamedDependency[ResolvedTenant]
    user: AuthUser
    settings: Settings
    model: ClassVar[type[Any]]
    # A resource with states: the column, and for each state the states it may move to.
    # A change of that column by PATCH or an action (``act``) outside them is 409.
    state_field: ClassVar[str] = "status"
    transitions: ClassVar[Mapping[str, Collection[str]] | None] = None
    _repository: Any = field(init=False)

    @classmethod
    def sources_of(cls, target: str) -> set[str]:
        """The states a row may move to ``target`` from."""
        return {source for source, targets in (cls.transitions or {}).items() if target in targets}

    def __post_init__(self) -> None:
        self._repository = repository_for(self.model)(
            session=self.session, auto_expunge=False, auto_commit=False
        )

    async def get(self, item_id: uuid.UUID, *, lock: bool = False) -> M:
        """The row, or 404. ``lock``: ``FOR UPDATE``, and read afresh even if the session
        holds it already, so what the caller compares is what it will write over."""
        try:
            return await self._repository.get(item_id, **(_LOCKED if lock else {}))
        except NotFoundError:
            raise not_found(self.model) from None

    async def get_to_write(self, item_id: uuid.UUID, if_match: str | None, *, lock: bool = False) -> M:
        """The row a write is about to change, or 412 when ``if_match`` no longer matches it.

        With ``If-Match`` the row is locked before it is compared: a concurrent write with
        the same tag waits for this transaction, then finds the new version and gets 412,
        so the check and the write cannot be separated by another write. Without it, no
        lock (unless ``lock``, for a change of state): last write wins, at no extra cost.
        """
        if if_match is None:
            return await self.get(item_id, lock=lock)
        item = await self.get(item_id, lock=True)
        if not if_match_allows(if_match, row_tag(item)):
            raise precondition_failed()
        return item

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        return values

    async def prepare_update(self, item: M, changes: dict[str, Any]) -> dict[str, Any]:
        return changes

    async def before_delete(self, item: M) -> None:
        return None

    async def create(self, data: msgspec.Struct) -> M:
        values = msgspec.structs.asdict(data)
        refuse_nul_characters(values)
        values = await self.prepare_create(values)
        item = self.model(**values)
        # No refresh after the INSERT: every column is set by the app or returned by the
        # INSERT itself, so advanced-alchemy's default re-read was one SELECT and round trip
        # more per create for nothing (bench/RESULTS.md, the write path).
        await self._write(lambda: self._repository.add(item, auto_refresh=False))
        return item

    async def update(self, item_id: uuid.UUID, data: msgspec.Struct, if_match: str | None = None) -> M:
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        moving = self.transitions is not None and self.state_field in changes
        item = await self.get_to_write(item_id, if_match, lock=moving)
        if moving:
            target = changes[self.state_field]
            current = getattr(item, self.state_field)
            if target != current:
                self.check_state(item, self.sources_of(target), f"becoming {target}")
        refuse_nul_characters(changes)
        for key, value in (await self.prepare_update(item, changes)).items():
            setattr(item, key, value)
        await self._write_changed(item)
        return item

    async def act(
        self, item_id: uuid.UUID, action: Action, data: msgspec.Struct | None, if_match: str | None = None
    ) -> M:
        """Run ``action`` on the row, locked so that its state cannot change meanwhile."""
        item = await self.get_to_write(item_id, if_match, lock=True)
        if action.allowed is not None:
            self.check_state(item, action.allowed, action.name)
        await getattr(self, action.run)(item, data)
        await self._write_changed(item)
        return item

    async def _write_changed(self, item: M) -> None:
        # The ETag is the version: it must move on every change, even when two app servers'
        # clocks disagree or one steps back. An unchanged row keeps its version.
        if self.session.is_modified(item):
            item.updated_at = next_updated_at(item.updated_at)
        # A flush of the attached row, not advanced-alchemy's ``repository.update``: that
        # reads every column, deferred ones too (media bytes), which fails under asyncio.
        await self._write(self.session.flush)

    def check_state(self, item: M, allowed: Collection[str], doing: str) -> None:
        """409 with the row's current state when ``doing`` needs another one."""
        state = getattr(item, self.state_field)
        if state not in allowed:
            needed = " or ".join(sorted(allowed))
            row = self.model.__tablename__.replace("_", " ")
            raise problem(
                409,
                f"This {row} row is {state}: {doing} needs it {needed}.",
                type_="invalid-state",
                state=state,
            )

    async def delete(self, item_id: uuid.UUID, if_match: str | None = None) -> None:
        item = await self.get_to_write(item_id, if_match)
        await self.before_delete(item)
        await self._write(lambda: self._repository.delete(item.id), deleting=True)

    async def _write(self, operation: Callable[[], Any], deleting: bool = False) -> None:
        try:
            await operation()
            await self.session.commit()
        except (
            Exception
        ) as exc:  # raw, or wrapped by advanced-alchemy: integrity_problem looks down the causes
            await self.session.rollback()
            mapped = integrity_problem(exc, deleting)
            if mapped is exc:
                raise
            raise mapped from None
