"""The service base of a resource: create, read, update and delete in the request's session.

Not ``from __future__ import annotations``: Litestar reads ``NamedDependency`` at runtime.
"""

import uuid
from collections.abc import Callable
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
from atrium.platform.web.bodies import refuse_nul_characters
from atrium.platform.web.db_errors import integrity_problem
from atrium.platform.web.errors import problem
from atrium.platform.web.idempotency import BeforeCommit
from atrium.tenants.base import TenantBase

M = TypeVar("M", bound=TenantBase)


def not_found(model: type[Any]) -> Exception:
    return problem(404, f"No such {model.__tablename__.replace('_', ' ')} row.")


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
    _repository: Any = field(init=False)

    def __post_init__(self) -> None:
        self._repository = repository_for(self.model)(
            session=self.session, auto_expunge=False, auto_commit=False
        )

    async def get(self, item_id: uuid.UUID) -> M:
        try:
            return await self._repository.get(item_id)
        except NotFoundError:
            raise not_found(self.model) from None

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        return values

    async def prepare_update(self, item: M, changes: dict[str, Any]) -> dict[str, Any]:
        return changes

    async def before_delete(self, item: M) -> None:
        return None

    async def create(self, data: msgspec.Struct, before_commit: BeforeCommit[M] | None = None) -> M:
        """Insert a row; ``before_commit(row)`` adds to the same transaction (idempotency.py)."""
        values = msgspec.structs.asdict(data)
        refuse_nul_characters(values)
        values = await self.prepare_create(values)
        item = self.model(**values)
        await self.add(item, before_commit)
        return item

    async def add(self, item: M, before_commit: BeforeCommit[M] | None = None) -> None:
        async def adding() -> None:
            await self._repository.add(item)
            if before_commit is not None:
                await before_commit(item)

        await self._write(adding)

    async def update(self, item_id: uuid.UUID, data: msgspec.Struct) -> M:
        item = await self.get(item_id)
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        refuse_nul_characters(changes)
        for key, value in (await self.prepare_update(item, changes)).items():
            setattr(item, key, value)
        # A flush of the attached row, not advanced-alchemy's ``repository.update``: that
        # reads every column, deferred ones too (media bytes), which fails under asyncio.
        await self._write(self.session.flush)
        return item

    async def delete(self, item_id: uuid.UUID) -> None:
        item = await self.get(item_id)
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
