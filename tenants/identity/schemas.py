"""Request and response bodies of the identity routes."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any

import msgspec

from atrium.platform.security.passwords import MAX_PASSWORD_BYTES
from atrium.platform.web.bodies import Schema, name_text
from atrium.platform.web.validation import MAX_BYTES, describe_pattern

EMAIL_PATTERN = describe_pattern(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$", "not a valid email address")
Name = name_text()
Email = Annotated[str, msgspec.Meta(pattern=EMAIL_PATTERN, max_length=320)]
Phone = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
# msgspec counts characters; bcrypt reads 72 bytes (validation.MAX_BYTES checks them).
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=MAX_PASSWORD_BYTES,
        description="Write-only: 8-72 characters, at most 72 bytes as UTF-8; never in a response.",
        extra={MAX_BYTES: MAX_PASSWORD_BYTES},
    ),
]
# The shape of a permission, so that each malformed one is named by its place in the list
# with the body's other errors; which resources exist is the service's to check.
Permission = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        pattern=describe_pattern(
            r"^(\*|[a-z][a-z-]*:(read|write|manage))$",
            "a permission: <resource>:read, :write or :manage, or *",
        ),
    ),
]
PERMISSIONS_DESCRIPTION = (
    "What the role grants: `<resource>:read`, `<resource>:write` (includes read), "
    "`<resource>:manage` (includes write) or `*` (everything). Only permissions the caller "
    "holds can be granted."
)
Permissions = Annotated[list[Permission], msgspec.Meta(max_length=200, description=PERMISSIONS_DESCRIPTION)]
# Fields whose meaning the name does not tell (API.md §5: described in the document).
OwnerId = Annotated[uuid.UUID, msgspec.Meta(description="The user who owns the row; the caller by default.")]
LinkedUser = Annotated[
    uuid.UUID,
    msgspec.Meta(description="The user this row links to a group and a role (the caller by default)."),
]
GroupId = Annotated[
    uuid.UUID, msgspec.Meta(description="One user group's id: the group the linked user is in.")
]
RoleId = Annotated[uuid.UUID, msgspec.Meta(description="One user role's id: the role the linked user holds.")]
Customization = Annotated[dict[str, Any], msgspec.Meta(description="Free JSON kept with this link.")]
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class UserRead(msgspec.Struct):
    id: uuid.UUID
    name: str
    email: str
    phone: str
    created_at: datetime.datetime
    updated_at: datetime.datetime


class UserCreate(Schema):
    name: Name
    email: Email
    phone: Phone
    password: Password


class UserUpdate(Schema):
    name: Name | Unset = UNSET
    email: Email | Unset = UNSET
    phone: Phone | Unset = UNSET
    password: Password | Unset = UNSET


class UserGroupRead(msgspec.Struct):
    id: uuid.UUID
    name: str
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


class UserGroupCreate(Schema):
    name: Name
    owner_id: OwnerId | None = None


class UserGroupUpdate(Schema):
    name: Name | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET


class UserRoleRead(msgspec.Struct):
    id: uuid.UUID
    name: str
    owner_id: OwnerId
    permissions: Annotated[list[str], msgspec.Meta(description=PERMISSIONS_DESCRIPTION)]
    created_at: datetime.datetime
    updated_at: datetime.datetime


class UserRoleCreate(Schema):
    name: Name
    owner_id: OwnerId | None = None
    permissions: Permissions = msgspec.field(default_factory=list)


class UserRoleUpdate(Schema):
    name: Name | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET
    permissions: Permissions | Unset = UNSET


class UserMetaRead(msgspec.Struct):
    id: uuid.UUID
    owner_id: LinkedUser
    user_groups: GroupId
    user_roles: RoleId
    uniq_customize: Customization | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class UserMetaCreate(Schema, kw_only=True):
    # ``null`` or absent: the caller, like every ``owner_id``.
    owner_id: LinkedUser | None = None
    # Required and never null, as the seed outlines them (API.md §6).
    user_groups: GroupId
    user_roles: RoleId
    uniq_customize: Customization | None = None


class UserMetaUpdate(Schema):
    owner_id: LinkedUser | Unset = UNSET
    user_groups: GroupId | Unset = UNSET
    user_roles: RoleId | Unset = UNSET
    uniq_customize: Customization | Unset | None = UNSET


class MeUpdate(Schema, kw_only=True):
    """The caller's own name, phone and password; the current password proves it is them."""

    current_password: Annotated[str, msgspec.Meta(max_length=1024, description="The caller's password now")]
    name: Name | Unset = UNSET
    phone: Phone | Unset = UNSET
    password: Password | Unset = UNSET


class LoginRequest(Schema):
    email: Annotated[str, msgspec.Meta(max_length=320)]
    password: Annotated[str, msgspec.Meta(max_length=1024)]


class LoginResponse(msgspec.Struct):
    access_token: str
    token_type: str
    expires_in: int
    user: UserRead


class MeResponse(msgspec.Struct):
    user: UserRead
    roles: list[str]
    permissions: list[str]
