"""/users, /user-groups, /user-roles and /user-meta: the shared CRUD conventions, specialised.

No ``from __future__ import annotations``: Litestar reads the handlers' annotations at runtime.
"""

import uuid
from typing import Annotated

from litestar import Request, delete
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.security.guards import requires
from atrium.platform.security.permissions import write
from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.concurrency import CHECKS_IF_MATCH, request_header
from atrium.platform.web.errors import problem, problem_responses
from atrium.platform.web.listing import Filter, query_problems
from atrium.platform.web.resources import ResourceSpec
from atrium.tenants.identity import schemas as s
from atrium.tenants.identity.services import UserGroupService, UserMetaService, UserRoleService, UserService

DELETE_PARAMETERS = ("transfer_to",)


def refuse_other_parameters(request: Request) -> None:
    """422 naming every query parameter but ``transfer_to``, and ``transfer_to`` given twice
    (API.md §5): a misspelt ``transfer_to`` had handed the user's rows to the owner."""
    errors = query_problems(request.query_params, DELETE_PARAMETERS, "this route", once=DELETE_PARAMETERS)
    if errors:
        raise problem(422, "The query parameters are not valid.", errors=errors)


@delete(
    "/{item_id:uuid}",
    guards=[requires(write("users"))],
    operation_id="delete_user",
    summary="Delete a user, handing the rows they own to another user",
    description=(
        "Deletes the user and their user-meta links, and hands every other row they own to "
        "`transfer_to`, or to the tenant's owner without it, in one transaction. The tenant's "
        "owner and the caller cannot be deleted (409)."
    ),
    status_code=204,
    opt={CHECKS_IF_MATCH: True},
    responses=problem_responses(401, 403, 404, 409, 412, 422, 503),
)
async def delete_user(
    db_session: NamedDependency[AsyncSession],
    tenant: NamedDependency[ResolvedTenant],
    settings: NamedDependency[Settings],
    request: Request,
    item_id: FromPath[uuid.UUID],
    transfer_to: Annotated[
        uuid.UUID | None,
        QueryParameter(
            description="The user who receives the deleted user's rows; the tenant's owner if absent."
        ),
    ] = None,
) -> None:
    refuse_other_parameters(request)
    service = UserService(db_session, tenant, request.user, settings)
    await service.delete_user(item_id, transfer_to, request_header(request.scope, b"if-match"))


SPECS = [
    ResourceSpec(
        "users",
        UserService,
        s.UserRead,
        s.UserCreate,
        s.UserUpdate,
        extra_handlers=[delete_user],
        operations=frozenset({"list", "create", "get", "update"}),
        filters=[Filter("email", casefold=True)],
        sort=["name", "email", "updated_at"],
        description="The tenant's users; emails are unique per tenant in any case, passwords write-only.",
    ),
    ResourceSpec(
        "user-groups",
        UserGroupService,
        s.UserGroupRead,
        s.UserGroupCreate,
        s.UserGroupUpdate,
        filters=[Filter("owner_id")],
        sort=["name", "updated_at"],
        description="Groups of users; a user joins one through a user-meta row.",
    ),
    ResourceSpec(
        "user-roles",
        UserRoleService,
        s.UserRoleRead,
        s.UserRoleCreate,
        s.UserRoleUpdate,
        filters=[Filter("owner_id")],
        sort=["name", "updated_at"],
        description="Roles and their permissions; a user holds one through a user-meta row.",
    ),
    ResourceSpec(
        "user-meta",
        UserMetaService,
        s.UserMetaRead,
        s.UserMetaCreate,
        s.UserMetaUpdate,
        filters=[Filter("owner_id"), Filter("user_groups"), Filter("user_roles")],
        sort=["updated_at"],
        description="Links a user to a group and a role; a user holds the permissions of their linked roles.",
    ),
]
