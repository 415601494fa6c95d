"""Request and response bodies of /forums and /forum-discussions."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated

import msgspec

from atrium.platform.web.bodies import Schema, name_text
from atrium.tenants.discussions import (
    DiscussionCreate,
    DiscussionRead,
    DiscussionUpdate,
    OwnerId,
    shape_rules,
)

Name = name_text()
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
Pinned = Annotated[
    bool,
    msgspec.Meta(
        description="Topics only: listed before the others. Setting it needs forum-discussions:manage."
    ),
]
Locked = Annotated[
    bool,
    msgspec.Meta(description="Topics only: no replies (409). Setting it needs forum-discussions:manage."),
]
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType

# What only moderators set, and only on a topic.
MODERATED = ("pinned", "locked")


class ForumRead(msgspec.Struct):
    id: uuid.UUID
    name: str
    description: str | None
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


class ForumCreate(Schema):
    name: Name
    description: Description | None = None
    owner_id: OwnerId | None = None


class ForumUpdate(Schema):
    name: Name | Unset = UNSET
    description: Description | Unset | None = UNSET
    owner_id: OwnerId | Unset = UNSET


class ForumDiscussionRead(DiscussionRead, kw_only=True):
    forum_id: uuid.UUID
    pinned: Pinned
    locked: Locked


class ForumDiscussionCreate(DiscussionCreate, kw_only=True):
    forum_id: uuid.UUID
    # Unset, not False: a reply given either (even false) is refused, as on PATCH.
    pinned: Pinned | Unset = UNSET
    locked: Locked | Unset = UNSET

    body_rules = (shape_rules(*MODERATED),)


class ForumDiscussionUpdate(DiscussionUpdate):
    pinned: Pinned | Unset = UNSET
    locked: Locked | Unset = UNSET
