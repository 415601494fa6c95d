"""What is special about users, groups, roles and user-meta rows."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from atrium.platform.crud import CrudService
from atrium.platform.errors import problem
from atrium.platform.passwords import MAX_PASSWORD_BYTES, hash_password
from atrium.platform.permissions import grants, is_valid_permission
from atrium.tenants.identity.models import User, UserGroup, UserMeta, UserRole


def field_problem(field: str, message: str, status: int = 422) -> Exception:
    return problem(status, message, errors=[{"field": field, "message": message}])


class OwnedService(CrudService[Any]):
    """Rows with an ``owner_id`` that defaults to the caller."""

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        if "owner_id" in values and values["owner_id"] is None:
            values["owner_id"] = self.user.id
        return values


class UserService(CrudService[User]):
    model = User

    async def _hash(self, password: str) -> str:
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise field_problem("password", f"password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")
        rounds = self.settings.bcrypt_rounds
        # bcrypt takes a quarter of a second at cost 12: keep it off the event loop.
        return await asyncio.to_thread(hash_password, password, rounds)

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        values["password"] = await self._hash(values["password"])
        return values

    async def prepare_update(self, item: User, changes: dict[str, Any]) -> dict[str, Any]:
        if "password" in changes:
            changes["password"] = await self._hash(changes["password"])
        return changes

    async def before_delete(self, item: User) -> None:
        if item.id == self.user.id:
            raise problem(409, "You cannot delete yourself.")
        if item.id == self.tenant.owner_id:
            raise problem(409, "The tenant's owner cannot be deleted.")


class UserGroupService(OwnedService):
    model = UserGroup


class UserRoleService(OwnedService):
    model = UserRole

    def _check_permissions(self, permissions: list[str]) -> None:
        invalid = [p for p in permissions if not is_valid_permission(p)]
        if invalid:
            raise field_problem("permissions", f"unknown permissions: {', '.join(sorted(invalid))}")
        # Nobody hands out more than they hold: an Admin cannot mint an Owner role.
        beyond = [p for p in permissions if not grants(self.user.permissions, p)]
        if beyond:
            raise problem(403, f"You cannot grant permissions you do not hold: {', '.join(sorted(beyond))}")

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        self._check_permissions(values["permissions"])
        values["permissions"] = sorted(set(values["permissions"]))
        return await super().prepare_create(values)

    async def prepare_update(self, item: UserRole, changes: dict[str, Any]) -> dict[str, Any]:
        if "permissions" in changes:
            self._check_permissions(changes["permissions"])
            changes["permissions"] = sorted(set(changes["permissions"]))
        return changes


class UserMetaService(OwnedService):
    model = UserMeta

    async def _check_role(self, role_id: Any) -> None:
        """Linking a role grants its permissions: only to callers who hold them all."""
        if role_id is None:
            return
        permissions = await self.session.scalar(select(UserRole.permissions).where(UserRole.id == role_id))
        if permissions is None:
            raise field_problem("user_roles", "no such row in this tenant")
        beyond = [p for p in permissions if not grants(self.user.permissions, p)]
        if beyond:
            raise problem(403, "You cannot link a role with permissions you do not hold.")

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        await self._check_role(values.get("user_roles"))
        return await super().prepare_create(values)

    async def prepare_update(self, item: UserMeta, changes: dict[str, Any]) -> dict[str, Any]:
        if "user_roles" in changes:
            await self._check_role(changes["user_roles"])
        return changes
