"""Request and response bodies of /projects and /project-discussions."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import msgspec

from atrium.platform.web.bodies import Schema
from atrium.tenants.discussions import Body, LastReplyAt, OwnerId, ParentId, ReplyCount, Title

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
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
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class ProjectRead(msgspec.Struct):
    id: uuid.UUID
    name: str
    description: str | None
    status: str
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


class ProjectUpdate(Schema):
    name: Name | Unset = UNSET
    description: Description | Unset | None = UNSET
    status: Status | Unset = UNSET
    member_ids: MemberIds | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET


class ProjectDiscussionRead(msgspec.Struct):
    id: uuid.UUID
    project_id: uuid.UUID
    title: str | None
    body: str
    parent_id: ParentId | None
    reply_count: ReplyCount
    last_reply_at: LastReplyAt | None
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


class ProjectDiscussionCreate(Schema, kw_only=True):
    project_id: uuid.UUID
    title: Title | None = None
    body: Body
    parent_id: ParentId | None = None
    owner_id: OwnerId | None = None


class ProjectDiscussionUpdate(Schema):
    title: Title | Unset = UNSET
    body: Body | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET
