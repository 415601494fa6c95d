"""Request and response bodies of /projects and /project-discussions."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import msgspec

from atrium.platform.web.bodies import Schema, listed_once, name_text
from atrium.tenants.discussions import DiscussionCreate, DiscussionRead, DiscussionUpdate, OwnerId

Name = name_text()
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
Status = Annotated[
    Literal["active", "archived"],
    msgspec.Meta(description="`archived`: the project, its discussions and documents are read-only (409)."),
]
MemberIds = Annotated[
    list[uuid.UUID],
    msgspec.Meta(
        max_length=10_000,
        description="Users who see the project and its discussions; the owner is always one of them.",
    ),
]
MEMBERS_ONCE = listed_once("member_ids", "a user")
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class ProjectRead(msgspec.Struct):
    id: uuid.UUID
    name: str
    description: str | None
    status: Status
    member_ids: MemberIds
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


class ProjectCreate(Schema):
    name: Name
    description: Description | None = None
    status: Status = "active"
    # Absent: the owner alone.
    member_ids: MemberIds | None = None
    owner_id: OwnerId | None = None

    body_rules = (MEMBERS_ONCE,)


class ProjectUpdate(Schema):
    name: Name | Unset = UNSET
    description: Description | Unset | None = UNSET
    status: Status | Unset = UNSET
    member_ids: MemberIds | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET

    body_rules = (MEMBERS_ONCE,)


class ProjectDiscussionRead(DiscussionRead, kw_only=True):
    project_id: uuid.UUID


class ProjectDiscussionCreate(DiscussionCreate, kw_only=True):
    project_id: uuid.UUID


class ProjectDiscussionUpdate(DiscussionUpdate):
    """A discussion's title (top level only), body and owner."""
