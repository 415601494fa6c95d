"""/users, /user-groups, /user-roles and /user-meta: the shared CRUD conventions, specialised."""

from __future__ import annotations

from litestar import Router

from atrium.platform.web.resources import ResourceSpec, crud_router
from atrium.tenants.identity import schemas as s
from atrium.tenants.identity.services import UserGroupService, UserMetaService, UserRoleService, UserService

SPECS = [
    ResourceSpec("users", UserService, s.UserRead, s.UserCreate, s.UserUpdate),
    ResourceSpec("user-groups", UserGroupService, s.UserGroupRead, s.UserGroupCreate, s.UserGroupUpdate),
    ResourceSpec("user-roles", UserRoleService, s.UserRoleRead, s.UserRoleCreate, s.UserRoleUpdate),
    ResourceSpec("user-meta", UserMetaService, s.UserMetaRead, s.UserMetaCreate, s.UserMetaUpdate),
]


def identity_routers() -> list[Router]:
    return [crud_router(spec) for spec in SPECS]
