"""What is special about users, groups, roles and user-meta rows."""

from __future__ import annotations

import asyncio
import uuid
from functools import cache
from typing import Any

import msgspec
from sqlalchemy import Column, ColumnElement, Table, delete, exists, func, not_, select, true, update
from sqlalchemy.dialects.postgresql import array

from atrium.platform.security.callers import load_auth_user
from atrium.platform.security.login_throttle import LoginThrottle
from atrium.platform.security.passwords import MAX_PASSWORD_BYTES, hash_password, verify_password
from atrium.platform.security.permissions import grants, is_valid_permission
from atrium.platform.web.bodies import refuse_nul_characters
from atrium.platform.web.concurrency import (
    check_if_match,
    next_updated_at,
    next_updated_at_sql,
    row_tag,
)
from atrium.platform.web.errors import field_problem, problem
from atrium.platform.web.services import CrudService
from atrium.tenants.base import HOLDS_OWNER, USER_IDS, tenant_metadata, utcnow
from atrium.tenants.identity.models import User, UserGroup, UserMeta, UserRole
from atrium.tenants.identity.schemas import MeUpdate


class PrivilegeGuard:
    """Nobody acts beyond the permissions they hold.

    Granting, taking away, or editing what carries a permission (a role, a user-role
    link, a user who holds it) needs that permission: an Admin cannot mint or take the
    Owner role, strip it from the owner, or take over the owner's account.
    """

    session: Any
    user: Any

    def require_covered(self, permissions: Any, action: str) -> None:
        beyond = sorted(p for p in permissions or () if not grants(self.user.permissions, p))
        if beyond:
            raise problem(
                403, f"You cannot {action}: it involves permissions you do not hold ({', '.join(beyond)})."
            )

    async def role_permissions(self, role_id: Any, field: str = "user_roles") -> list[str]:
        if role_id is None:
            return []
        permissions = await self.session.scalar(select(UserRole.permissions).where(UserRole.id == role_id))
        if permissions is None:
            raise field_problem(422, field, "no such row in this tenant")
        return list(permissions)

    async def user_permissions(self, user_id: Any) -> frozenset[str]:
        holder = await load_auth_user(self.session, user_id)
        return holder.permissions if holder is not None else frozenset()


class UserService(CrudService[User], PrivilegeGuard):
    model = User

    async def _hash(self, password: str) -> str:
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise field_problem(422, "password", f"at most {MAX_PASSWORD_BYTES} bytes in UTF-8")
        rounds = self.settings.bcrypt_rounds
        # bcrypt takes a quarter of a second at cost 12: keep it off the event loop.
        return await asyncio.to_thread(hash_password, password, rounds)

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        values["password"] = await self._hash(values["password"])
        return values

    async def update_me(self, data: MeUpdate, throttle: LoginThrottle, if_match: str | None = None) -> User:
        """The caller changes their own name, phone or password (``PATCH /auth/me``).

        No permission is needed, and none is involved: only the caller's own row changes.
        A wrong current password counts as a failed login, so a stolen token cannot be
        used to guess the password faster than the login form allows.
        """
        # Locked with If-Match, as any write's row (``get_to_write``), so that the check and
        # the write cannot be separated by another write.
        user = await self.get(self.user.id, lock=if_match is not None)
        # The attempt is counted before the password is checked, as logins are, so a burst
        # of wrong guesses gets no more checks than the limit.
        await throttle.take(self.tenant.id, user.email, None)
        rounds = self.settings.bcrypt_rounds
        if not await asyncio.to_thread(verify_password, data.current_password, user.password, rounds):
            raise field_problem(403, "current_password", "not your current password")
        await throttle.record_success(self.tenant.id, user.email, None)
        # After the password: a 412 would invite a retry that can only end in 403.
        check_if_match(if_match, row_tag(user))
        changes = {
            k: v
            for k, v in msgspec.structs.asdict(data).items()
            if v is not msgspec.UNSET and k != "current_password"
        }
        refuse_nul_characters(changes)
        await self._new_password(changes)
        for key, value in changes.items():
            setattr(user, key, value)
        user.updated_at = next_updated_at(user.updated_at)
        # A flush of users: CallerInvalidation drops the caller in every process on commit.
        await self._write(self.session.flush)
        return user

    async def check_may_write(self, item: User) -> None:
        self.require_covered(await self.user_permissions(item.id), "change or delete this user")

    async def prepare_update(self, item: User, changes: dict[str, Any]) -> dict[str, Any]:
        await self._new_password(changes)
        return changes

    async def _new_password(self, changes: dict[str, Any]) -> None:
        """A new password is hashed, and signs the user out everywhere: every token issued
        before now is refused from now on, the one that made the change included (a token
        may have been stolen; the password change is how a user ends it)."""
        if "password" in changes:
            changes["password"] = await self._hash(changes["password"])
            changes["tokens_valid_after"] = utcnow()

    def _refuse_deleting(self, user_id: uuid.UUID) -> None:
        # Before any other check: no permission or ETag would ever make these deletable.
        if user_id == self.user.id:
            raise problem(409, "You cannot delete yourself.")
        if user_id == self.tenant.owner_id:
            raise problem(409, "The tenant's owner cannot be deleted.")

    async def delete_user(
        self, item_id: uuid.UUID, transfer_to: uuid.UUID | None, if_match: str | None = None
    ) -> None:
        """Delete a user, their user-meta links, and hand every other row they own to
        ``transfer_to`` (or the tenant's owner), all in one transaction."""
        self._refuse_deleting(item_id)
        # Locked first: a write of theirs in flight (holding their row FOR KEY SHARE through
        # its owner_id) is waited for and its row handed over too, where it would have been
        # missed by the handover and then failed the deletion (409).
        item = await self.get_to_write(item_id, if_match, lock=True)
        heir = await self._heir(item.id, transfer_to)

        async def hand_over_and_delete() -> None:
            for table, column, theirs in owner_references():
                if theirs:
                    await self.session.execute(delete(table).where(column == item.id))
                    continue
                values: dict[str, Any] = {column.name: heir}
                if "updated_at" in table.c:
                    values["updated_at"] = next_updated_at_sql(table.c.updated_at)
                await self.session.execute(update(table).where(column == item.id).values(values))
            for table, column in user_id_arrays():
                values = {column.name: func.array_remove(column, item.id)}
                if "updated_at" in table.c:
                    values["updated_at"] = next_updated_at_sql(table.c.updated_at)
                holding = column.op("@>")(array([item.id]))
                await self.session.execute(update(table).where(holding).values(values))
            for table, column, rows in owner_holding_arrays():
                # The rows just handed over: their new owner joins, as an owner always is.
                held = column.op("@>", is_comparison=True)(array([heir]))
                lacking = rows & (table.c.owner_id == heir) & not_(held)
                joined = {column.name: func.array_append(column, heir)}
                await self.session.execute(update(table).where(lacking).values(joined))
            await self._repository.delete(item.id)

        await self._write(hand_over_and_delete, deleting=True)

    async def _heir(self, deleted: uuid.UUID, transfer_to: uuid.UUID | None) -> uuid.UUID:
        if transfer_to is None:
            if self.tenant.owner_id is None:
                raise problem(409, "This tenant has no owner to hand the user's rows to; pass transfer_to.")
            return self.tenant.owner_id
        if transfer_to == deleted:
            raise query_problem("transfer_to", "must be another user than the one deleted")
        if not await self.session.scalar(select(exists().where(User.id == transfer_to))):
            raise query_problem("transfer_to", "no such user in this tenant")
        return transfer_to


def query_problem(parameter: str, message: str) -> Exception:
    return problem(
        422,
        f"The query parameter {parameter!r} is not valid: {message}.",
        errors=[{"field": parameter, "message": message, "source": "query"}],
    )


@cache
def owner_references() -> tuple[tuple[Table, Column[Any], bool], ...]:
    """Every column of a tenant table that references ``users.id``, from the tenant metadata
    (complete once the areas are loaded, as they are in a running app), so that a new
    area's owned rows are handed over without a list kept by hand.

    The flag is true where the rows are the user's alone (``ON DELETE CASCADE``: their
    user-meta links), deleted with them; every other row is handed over, but for columns
    that record who did something rather than who owns it (``ON DELETE SET NULL``: a
    version's editor), which the database clears itself.
    """
    users = tenant_metadata.tables["users"]
    found = []
    for table in tenant_metadata.sorted_tables:
        for fk in table.foreign_keys:
            ondelete = (fk.ondelete or "").upper()
            if fk.column is users.c.id and ondelete != "SET NULL":
                found.append((table, fk.parent, ondelete == "CASCADE"))
    return tuple(found)


@cache
def owner_holding_arrays() -> tuple[tuple[Table, Column[Any], ColumnElement[bool]], ...]:
    """Every array of user ids that holds its row's owner (``base.HOLDS_OWNER``), with the
    rows it holds the owner on, from the tenant metadata."""
    found = []
    for table in tenant_metadata.sorted_tables:
        for column in table.columns:
            rows = column.info.get(HOLDS_OWNER)
            if rows:
                found.append((table, column, true() if rows is True else table.c[rows[0]] == rows[1]))
    return tuple(found)


@cache
def user_id_arrays() -> tuple[tuple[Table, Column[Any]], ...]:
    """Every array column of user ids (``base.USER_IDS``), from the tenant metadata: a
    deleted user leaves each of them."""
    return tuple(
        (table, column)
        for table in tenant_metadata.sorted_tables
        for column in table.columns
        if column.info.get(USER_IDS)
    )


class UserGroupService(CrudService[UserGroup]):
    model = UserGroup


class UserRoleService(CrudService[UserRole], PrivilegeGuard):
    model = UserRole

    def _check_permissions(self, permissions: list[str]) -> None:
        invalid = [p for p in permissions if not is_valid_permission(p)]
        if invalid:
            raise field_problem(422, "permissions", f"unknown permissions: {', '.join(sorted(invalid))}")
        self.require_covered(permissions, "grant these permissions")

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        self._check_permissions(values["permissions"])
        values["permissions"] = sorted(set(values["permissions"]))
        return await super().prepare_create(values)

    async def check_may_write(self, item: UserRole) -> None:
        self.require_covered(item.permissions, "change or delete this role")

    async def prepare_update(self, item: UserRole, changes: dict[str, Any]) -> dict[str, Any]:
        if "permissions" in changes:
            self._check_permissions(changes["permissions"])
            changes["permissions"] = sorted(set(changes["permissions"]))
        return changes


# The rows a user-meta row links, by field.
_LINKED = (("owner_id", User), ("user_groups", UserGroup), ("user_roles", UserRole))


class UserMetaService(CrudService[UserMeta], PrivilegeGuard):
    """A user-meta row with a role grants that role's permissions to its owner."""

    model = UserMeta

    async def check_links(self, values: dict[str, Any]) -> None:
        """422 naming every linked user, group and role in ``values`` that is not a row of
        this tenant (API.md §5: every bad field in one answer), in one query. Without it the
        role was checked first and the database then named one missing row at a time."""
        fields = [(name, model) for name, model in _LINKED if values.get(name) is not None]
        if not fields:
            return
        found = (
            await self.session.execute(
                select(*(exists().where(model.id == values[name]) for name, model in fields))
            )
        ).one()
        missing = [name for (name, _), present in zip(fields, found, strict=True) if not present]
        if missing:
            raise problem(
                422,
                "A referenced row does not exist.",
                errors=[{"field": name, "message": "no such row in this tenant"} for name in missing],
            )

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        await self.check_links(values)
        self.require_covered(await self.role_permissions(values.get("user_roles")), "link this role")
        return await super().prepare_create(values)

    async def check_may_write(self, item: UserMeta) -> None:
        # The link as it is: taking a role away needs its powers too.
        self.require_covered(await self.role_permissions(item.user_roles), "change or remove this role link")

    async def prepare_update(self, item: UserMeta, changes: dict[str, Any]) -> dict[str, Any]:
        await self.check_links(changes)
        # ... and as it will be.
        self.require_covered(
            await self.role_permissions(changes.get("user_roles", item.user_roles)), "link this role"
        )
        return changes
