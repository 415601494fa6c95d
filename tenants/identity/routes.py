"""/users, /user-groups, /user-roles and /user-meta: the shared CRUD conventions, specialised."""

from __future__ import annotations

from litestar import Router

from atrium.platform.web.resources import ResourceSpec, crud_router
from atrium.tenants.identity import schemas as s
from atrium.tenants.identity.services import UserGroupService, UserMetaService, UserRoleService, UserService

SPECS = [
    ResourceSpec(
        "users",
        UserService,
        s.UserRead,
        s.UserCreate,
        s.UserUpdate,
        description="The tenant's users; emails are unique per tenant in any case, passwords write-only.",
    ),
    ResourceSpec(
        "user-groups",
        UserGroupService,
        s.UserGroupRead,
        s.UserGroupCreate,
        s.UserGroupUpdate,
        description="Groups of users; a user joins one through a user-meta row.",
    ),
    ResourceSpec(
        "user-roles",
        UserRoleService,
        s.UserRoleRead,
        s.UserRoleCreate,
        s.UserRoleUpdate,
        description="Roles and their permissions; a user holds one through a user-meta row.",
    ),
    ResourceSpec(
        "user-meta",
        UserMetaService,
        s.UserMetaRead,
        s.UserMetaCreate,
        s.UserMetaUpdate,
        description="Links a user to a group and a role; a user holds the permissions of their linked roles.",
    ),
]


def identity_routers() -> list[Router]:
    return [crud_router(spec) for spec in SPECS]
