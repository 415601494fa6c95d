"""What is special about projects and their discussions: members, archiving, threads.

``refuse_writes_if_archived`` is the hook for every row that lives under a project
(its discussions here; documents when that area comes): call it first in the row's
write, in the write's transaction.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, func, literal, or_, select
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.security.callers import AuthUser
from atrium.platform.security.permissions import manage
from atrium.platform.web.errors import field_problem, problem
from atrium.platform.web.services import CrudService
from atrium.tenants.discussions import ThreadService
from atrium.tenants.identity.models import User
from atrium.tenants.projects.models import Project, ProjectDiscussion
from atrium.tenants.projects.schemas import MEMBERS_ONCE

PROJECTS = "projects"


def member_of_project(caller: ColumnElement[Any]) -> ColumnElement[bool]:
    """``caller`` sees the project: a member (``@>``, which the GIN index on ``member_ids``
    serves), or its owner, who always is one, even when a deleted user's projects were
    handed to them (identity's user deletion changes ``owner_id`` alone)."""
    return or_(Project.member_ids.op("@>")(array([caller])), Project.owner_id == caller)


async def refuse_writes_if_archived(
    session: AsyncSession, project_id: uuid.UUID, caller: AuthUser | None = None, field: str = "project_id"
) -> None:
    """The hook for rows under a project: 409 while the project is archived.

    With ``caller``, a project the caller does not see (not a member, no
    ``projects:manage``) is 422 on ``field``, as a missing one is (API.md §5: a reference
    to a row the caller cannot see). The project's row is locked ``FOR SHARE`` until the
    caller's transaction ends, so the project cannot be archived between this check and
    the write it guards (archiving waits for that write, and that write for an archiving
    already under way).
    """
    statement = select(Project.status).where(Project.id == project_id).with_for_update(read=True)
    if caller is not None and not caller.can(manage(PROJECTS)):
        statement = statement.where(member_of_project(literal(caller.id, Project.id.type)))
    status = await session.scalar(statement)
    if status is None:
        raise field_problem(422, field, "no such project")
    if status == "archived":
        raise problem(
            409,
            "This project is archived: it and everything in it are read-only until it is made active again.",
            type_="invalid-state",
            state=status,
        )


class ProjectService(CrudService[Project]):
    model = Project
    transitions: ClassVar[dict[str, tuple[str, ...]]] = {"active": ("archived",), "archived": ("active",)}

    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return member_of_project(caller)

    async def _check_members(self, member_ids: list[uuid.UUID], owner_id: uuid.UUID) -> list[uuid.UUID]:
        problems = [error["message"] for error in MEMBERS_ONCE({"member_ids": member_ids})]
        if owner_id not in member_ids:
            problems.append("must include the project's owner")
        if not problems:
            found = await self.session.scalar(select(func.count()).where(User.id.in_(member_ids)))
            if found != len(member_ids):
                problems.append("names a user who does not exist in this tenant")
        if problems:
            raise problem(
                422,
                "The members are not valid.",
                errors=[{"field": "member_ids", "message": message} for message in problems],
            )
        return member_ids

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        owner = values["owner_id"]
        if values.get("member_ids") is None:
            values["member_ids"] = [owner]
        else:
            await self._check_members(values["member_ids"], owner)
        return values

    async def prepare_update(self, item: Project, changes: dict[str, Any]) -> dict[str, Any]:
        if item.status == "archived" and changes.get("status") != "active":
            self.check_state(item, ("active",), "changing it")
        owner = changes.get("owner_id", item.owner_id)
        if "member_ids" in changes:
            await self._check_members(changes["member_ids"], owner)
        elif owner not in item.member_ids:
            # A new owner joins the members: the owner is always one of them.
            changes["member_ids"] = [*item.member_ids, owner]
        return changes

    async def before_delete(self, item: Project) -> None:
        self.check_state(item, ("active",), "deleting it")


class ProjectDiscussionService(ThreadService):
    model = ProjectDiscussion
    container = "project_id"
    # Exactly those who see the project see its discussions.
    sees_every_row = manage(PROJECTS)

    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        # Uncorrelated (``IN``, not ``EXISTS``): the read path compiles the rule on its own,
        # outside any statement it could correlate with (resources.visibility_sql).
        return ProjectDiscussion.project_id.in_(select(Project.id).where(member_of_project(caller)))

    async def check_container(self, container_id: uuid.UUID) -> None:
        await refuse_writes_if_archived(self.session, container_id, self.user)
