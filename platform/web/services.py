"""The service base of a resource: create, read, update and delete in the request's session.

Not ``from __future__ import annotations``: Litestar reads ``NamedDependency`` at runtime.
"""

import re
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgspec
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from litestar import Request
from litestar.di import NamedDependency, Provide
from litestar.plugins.problem_details import ProblemDetailsException
from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.interfaces import ORMOption

from atrium.platform.db.queued_inserts import commit, insertable, queue_insert
from atrium.platform.security.callers import AuthUser
from atrium.platform.security.permissions import manage
from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.actions import Action
from atrium.platform.web.bodies import refuse_nul_characters
from atrium.platform.web.concurrency import check_if_match, next_updated_at, row_tag
from atrium.platform.web.db_errors import integrity_problem
from atrium.platform.web.errors import problem, with_errors
from atrium.platform.web.idempotency import BeforeCommit
from atrium.tenants.base import TenantBase

M = TypeVar("M", bound=TenantBase)


def _names(errors: Any, field: str) -> bool:
    return isinstance(errors, list) and any(isinstance(e, dict) and e.get("field") == field for e in errors)


def row_name(model: type[Any]) -> str:
    """One row of ``model`` in words, for messages: ``Ticket`` "ticket", ``UserGroup`` "user group"."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", model.__name__).lower()


def not_found(model: type[Any]) -> Exception:
    return problem(404, f"No such {row_name(model)}.")


@cache
def repository_for(model: type[Any]) -> type[SQLAlchemyAsyncRepository[Any]]:
    """advanced-alchemy's repository for ``model``, made once per model."""
    return type(f"{model.__name__}Repository", (SQLAlchemyAsyncRepository,), {"model_type": model})


@dataclass
class CrudService(Generic[M]):
    """Create, read, update and delete one resource inside the request's transaction.

    Subclasses override the ``prepare_*`` and ``before_delete`` hooks, and ``visibility``
    where a resource shows some rows only to some callers. Writes commit explicitly, so a
    failed commit is the client's error response, never a lost write behind a 2xx.

    Ownership (API.md §4) is enforced here, once for every resource whose model has an
    ``owner_id``: the route's guard lets ``write`` through, and ``write`` changes and
    deletes only the caller's own rows, creates rows owned by the caller only, and never
    hands a row to someone else; ``manage`` does all of it on any row. Without an
    ``owner_id`` (users, customize) there is nothing to own: ``write`` is ``manage``.
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
    # The permission name, set by the ResourceSpec that serves this service.
    resource: ClassVar[str] = ""
    # The permission that lifts ``visibility`` where it is not ``<resource>:manage``: a
    # row visible exactly to those who see another row (a project's discussions: its
    # members and ``projects:manage``).
    sees_every_row: ClassVar[str] = ""

    @classmethod
    def for_request(
        cls,
        session: AsyncSession,
        tenant: ResolvedTenant,
        request: Request[Any, Any, Any],
        settings: Settings,
    ) -> Self:
        """The service of one request, given what it needs of the app (``bind_request``)."""
        service = cls(session, tenant, request.user, settings)
        service.bind_request(request)
        return service

    async def check_may_write(self, item: M) -> None:
        """403 when the caller may not change or delete ``item`` beyond ownership (a user
        with powers beyond the caller's); before ``If-Match`` is compared. Nothing by default."""
        return None

    def locks_to_update(self, changes: dict[str, Any]) -> bool:
        """Whether an update making ``changes`` must lock the row before reading it: when
        the new values are computed from the current ones (a document's next version
        number), two concurrent updates must not both read the same. No by default: last
        write wins, at no extra cost."""
        return False

    # Whether a delete locks the row before its ``before_delete``: when rows elsewhere name
    # it without a foreign key and are mended there, so that a write naming it at the same
    # moment (holding it ``FOR KEY SHARE``) is done first and mended too.
    locks_to_delete: ClassVar[bool] = False

    @classmethod
    def dependency(cls) -> dict[str, Provide]:
        """``crud``, the request's service, for handlers beside the resource's own (a room's
        messages, a ticket's replies): they name it instead of what it is made of."""

        def provide(
            db_session: NamedDependency[AsyncSession],
            tenant: NamedDependency[ResolvedTenant],
            settings: NamedDependency[Settings],
            request: Request[Any, Any, Any],
        ) -> Self:
            return cls.for_request(db_session, tenant, request, settings)

        return {"crud": Provide(provide, sync_to_thread=False)}

    def bind_request(self, request: Request[Any, Any, Any]) -> None:
        """Take what the resource needs of the app beyond the session from the request
        (chats: its live channels). Nothing by default."""
        return None

    @classmethod
    def sources_of(cls, target: str) -> set[str]:
        """The states a row may move to ``target`` from."""
        return {source for source, targets in (cls.transitions or {}).items() if target in targets}

    @cached_property
    def _repository(self) -> Any:
        # Made when first used (deletes, ORM creates): a queued create never needs one, and
        # making it cost every create ~3 % of its time (copies of the repository's options).
        return repository_for(self.model)(session=self.session, auto_expunge=False, auto_commit=False)

    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        """The rows ``caller`` (the user id, as an SQL expression) may see without
        ``manage``; ``None``: every row (API.md §6, unless a resource gives a rule).

        A row outside it is 404 on get, change and delete, as if it did not exist.
        """
        return None

    @classmethod
    def owned(cls) -> bool:
        return "owner_id" in cls.model.__table__.c

    def may_manage(self) -> bool:
        if not self.resource:
            raise RuntimeError(f"{type(self).__name__} serves no ResourceSpec: its permission is unknown")
        return self.user.can(manage(self.resource))

    @classmethod
    def sees_every_row_permission(cls) -> str:
        """The permission whose holders see every row, whatever ``visibility`` says."""
        return cls.sees_every_row or manage(cls.resource)

    def visible_to_caller(self) -> ColumnElement[bool] | None:
        if self.user.can(self.sees_every_row_permission()):
            return None
        return self.visibility(literal(self.user.id, self.model.id.type))

    async def get(self, item_id: uuid.UUID, *options: ORMOption, lock: bool = False) -> M:
        """The row, or 404 when it does not exist or the caller may not see it. ``lock``:
        ``FOR UPDATE``, and read afresh even if the session holds it already, so what the
        caller compares is what it will write over."""
        statement = select(self.model).where(self.model.id == item_id).options(*options)
        visible = self.visible_to_caller()
        if visible is not None:
            statement = statement.where(visible)
        if lock:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        item = await self.session.scalar(statement)
        if item is None:
            raise not_found(self.model)
        return item

    def _refuse_beyond_ownership(self, message: str) -> Exception:
        return problem(403, f"{message} That needs the permission {manage(self.resource)!r}.")

    def check_owner(self, item: M) -> None:
        """403 unless the caller may change ``item``: they own it, or hold ``manage``."""
        if self.owned() and item.owner_id != self.user.id and not self.may_manage():  # type: ignore[attr-defined]
            raise self._refuse_beyond_ownership("This row belongs to another user.")

    def check_new_owner(self, owner_id: uuid.UUID | None) -> None:
        """403 when ``owner_id`` hands a row to another user without ``manage``."""
        if owner_id is not None and owner_id != self.user.id and not self.may_manage():
            raise self._refuse_beyond_ownership("Only you can be the owner of the rows you write.")

    async def get_to_write(self, item_id: uuid.UUID, if_match: str | None, *, lock: bool = False) -> M:
        """The row a write is about to change: 404 if the caller may not see it, 403 if they may
        not change it (ownership), 412 when ``if_match`` no longer matches it.

        With ``If-Match`` the row is locked before it is compared: a concurrent write with
        the same tag waits for this transaction, then finds the new version and gets 412,
        so the check and the write cannot be separated by another write. Without it, no
        lock (unless ``lock``, for a change of state): last write wins, at no extra cost.
        """
        item = await self.get(item_id, lock=lock or if_match is not None)
        self.check_owner(item)
        # Whether the caller may write this row at all comes before whether their copy is
        # current: a 412 would invite a retry that can only end in 403.
        await self.check_may_write(item)
        if if_match is not None:  # the tag is made only when compared
            check_if_match(if_match, row_tag(item))
        return item

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        return values

    # Where a create may find the row it describes already there (``created_status``), what
    # its 200 means, for the document; empty: a create is always 201.
    found_again: ClassVar[str] = ""

    def created_status(self, item: M) -> int:
        """The status of a create's answer: 201, or 200 where a resource's create may
        find the row it describes already there (a direct chat room)."""
        return 201

    async def prepare_update(self, item: M, changes: dict[str, Any]) -> dict[str, Any]:
        return changes

    async def before_delete(self, item: M) -> None:
        return None

    async def create(self, data: msgspec.Struct, before_commit: BeforeCommit[M] | None = None) -> M:
        """Insert a row; ``before_commit(row)`` adds to the same transaction (idempotency.py)."""
        values = msgspec.structs.asdict(data)
        refuse_nul_characters(values)
        if self.owned():
            # API.md §5: absent or null, the owner is the caller.
            if values.get("owner_id") in (None, msgspec.UNSET):
                values["owner_id"] = self.user.id
            self.check_new_owner(values["owner_id"])
        try:
            values = await self.prepare_create(values)
        except ProblemDetailsException as refused:
            # The owner is otherwise checked by its foreign key at the INSERT, which a 422
            # of the area's own checks never reaches: named here too, every bad field in one.
            if refused.status_code == 422 and (more := await self._owner_errors(values, refused)):
                raise with_errors(refused, more) from None
            raise
        item = self.model(**values)
        await self.add(item, before_commit)
        return item

    async def _owner_errors(
        self, values: dict[str, Any], refused: ProblemDetailsException
    ) -> list[dict[str, str]]:
        """``owner_id`` as a 422 names it when no user has that id (the caller always
        exists); nothing when ``refused`` names it already or the check cannot run."""
        owner_id = values.get("owner_id")
        named = refused.extra.get("errors") if isinstance(refused.extra, dict) else None
        if not self.owned() or owner_id in (None, self.user.id) or _names(named, "owner_id"):
            return []
        (key,) = self.model.__table__.c.owner_id.foreign_keys
        users = key.column.table
        try:
            found = await self.session.scalar(select(users.c.id).where(users.c.id == owner_id))
        except DBAPIError:  # a transaction an earlier statement failed: the 422 stands alone
            return []
        return [] if found is not None else [{"field": "owner_id", "message": "no such user in this tenant"}]

    async def add(self, item: M, before_commit: BeforeCommit[M] | None = None) -> None:
        async def adding() -> None:
            if insertable(self.session, self.model):
                # Sent with the COMMIT, past the unit of work (queued_inserts.py).
                queue_insert(self.session, item)
            else:
                # No refresh after the INSERT: every column is set by the app or returned by
                # the INSERT itself, so advanced-alchemy's default re-read was one SELECT and
                # round trip more per create for nothing (bench/RESULTS.md, the write path).
                await self._repository.add(item, auto_refresh=False)
            if before_commit is not None:
                await before_commit(item)

        await self._write(adding)

    async def update(self, item_id: uuid.UUID, data: msgspec.Struct, if_match: str | None = None) -> M:
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        moving = self.transitions is not None and self.state_field in changes
        item = await self.get_to_write(item_id, if_match, lock=moving or self.locks_to_update(changes))
        if moving:
            target = changes[self.state_field]
            current = getattr(item, self.state_field)
            if target != current:
                self.check_state(item, self.sources_of(target), f"becoming {target}")
        refuse_nul_characters(changes)
        if "owner_id" in changes:
            self.check_new_owner(changes["owner_id"])
        for key, value in (await self.prepare_update(item, changes)).items():
            setattr(item, key, value)
        await self._write_changed(item)
        return item

    async def act(
        self,
        item_id: uuid.UUID,
        action: Action,
        data: msgspec.Struct | None,
        if_match: str | None = None,
        before_commit: BeforeCommit[M] | None = None,
    ) -> M:
        """Run ``action`` on the row, locked so that its state cannot change meanwhile;
        ``before_commit(row)`` adds to the same transaction (idempotency.py)."""
        item = await self.get_to_write(item_id, if_match, lock=True)
        if action.allowed is not None:
            self.check_state(item, action.allowed, action.name)
        await getattr(self, action.run)(item, data)
        await self._write_changed(item, before_commit)
        return item

    async def _write_changed(self, item: M, before_commit: BeforeCommit[M] | None = None) -> None:
        # The ETag is the version: it must move on every change, even when two app servers'
        # clocks disagree or one steps back. An unchanged row keeps its version.
        if self.session.is_modified(item):
            item.updated_at = next_updated_at(item.updated_at)

        async def flushing() -> None:
            # A flush of the attached row, not advanced-alchemy's ``repository.update``: that
            # reads every column, deferred ones too (media bytes), which fails under asyncio.
            await self.session.flush()
            if before_commit is not None:
                await before_commit(item)

        await self._write(flushing)

    def check_state(self, item: M, allowed: Collection[str], doing: str) -> None:
        """409 with the row's current state when ``doing`` needs another one."""
        state = getattr(item, self.state_field)
        if state not in allowed:
            states = sorted(allowed)
            listed = ", ".join(states[:-1]) + f" or {states[-1]}" if len(states) > 1 else "".join(states)
            needed = f"needs it to be {listed}" if allowed else "is never allowed"
            raise problem(
                409,
                f"This {row_name(self.model)} is {state}: {doing} {needed}.",
                type_="invalid-state",
                state=state,
            )

    async def delete(self, item_id: uuid.UUID, if_match: str | None = None) -> None:
        item = await self.get_to_write(item_id, if_match, lock=self.locks_to_delete)
        await self.before_delete(item)
        try:
            await self._write(lambda: self._repository.delete(item.id), deleting=True)
        except ProblemDetailsException as refused:
            if refused.status_code != 409 or not (uses := await self._references_to(item_id)):
                raise
            raise problem(
                409,
                f"This {row_name(self.model)} is still in use: {uses}. Change or delete those first.",
                type_="conflict",
            ) from None

    async def _references_to(self, item_id: uuid.UUID) -> str:
        """What still points at a row whose delete was refused, counted (the failure path
        only: a delete that succeeds pays nothing for it)."""
        target = self.model.__table__.c.id
        uses = []
        for table in self.model.metadata.sorted_tables:
            for fk in table.foreign_keys:
                if fk.column is target:
                    count = await self.session.scalar(
                        select(func.count()).select_from(table).where(fk.parent == item_id)
                    )
                    if count:
                        name = table.name.replace("_", "-")
                        uses.append(f"{count} {name} row{'s' if count != 1 else ''} ({fk.parent.name})")
        await self.session.rollback()
        return ", ".join(uses)

    async def _write(self, operation: Callable[[], Any], deleting: bool = False) -> None:
        try:
            await operation()
            await commit(self.session)
        except (
            Exception
        ) as exc:  # raw, or wrapped by advanced-alchemy: integrity_problem looks down the causes
            await self.session.rollback()
            mapped = integrity_problem(exc, deleting, row_name(self.model))
            if mapped is exc:
                raise
            raise mapped from None
