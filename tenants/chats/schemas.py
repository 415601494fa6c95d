"""Request and response bodies of /chats and their messages."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec

from atrium.platform.web.bodies import Schema, name_text, written_text
from atrium.tenants.discussions import OwnerId

BODY_MAX = 4_000

Name = name_text(description="Null for a direct room.")
Kind = Annotated[
    Literal["group", "direct"],
    msgspec.Meta(description="`direct`: exactly two members, one room per pair."),
]
MemberIds = Annotated[
    list[uuid.UUID],
    msgspec.Meta(
        max_length=1_000,
        description=(
            "Users of this tenant who see the room and receive its events; the creator is always "
            "one of them. A direct room has exactly two, and they never change."
        ),
    ),
]
UnreadCount = Annotated[
    int, msgspec.Meta(description="Server-set, for the caller: messages after their read marker.")
]
Body = written_text(BODY_MAX)
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class ChatRead(msgspec.Struct):
    id: uuid.UUID
    name: str | None
    kind: Kind
    member_ids: MemberIds
    last_seq: int
    last_message_at: datetime.datetime | None
    unread_count: UnreadCount
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


def room_rules(values: dict[str, Any]) -> list[dict[str, str]]:
    """A body rule (bodies.Schema) of a new room: a group has a name, a direct room none."""
    kind, name = values.get("kind"), values.get("name")
    if kind == "group" and "name" in values and name is None:
        return [{"field": "name", "message": "required for a group room"}]
    if kind == "direct" and name is not None:
        return [{"field": "name", "message": "a direct room has no name"}]
    return []


class ChatCreate(Schema):
    kind: Kind = "group"
    name: Name | None = None
    member_ids: MemberIds | None = None
    owner_id: OwnerId | None = None

    body_rules = (room_rules,)


class ChatUpdate(Schema):
    name: Name | Unset = UNSET
    member_ids: MemberIds | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET


class MessageRead(msgspec.Struct):
    id: uuid.UUID
    chat_id: uuid.UUID
    seq: int
    body: str
    parent_id: uuid.UUID | None
    owner_id: uuid.UUID
    created_at: datetime.datetime
    edited_at: datetime.datetime | None
    deleted: bool


class MessageCreate(Schema):
    body: Body
    parent_id: (
        Annotated[
            uuid.UUID,
            msgspec.Meta(description="A top-level message of the same room; a reply to a reply is 422."),
        ]
        | None
    ) = None


class MessageUpdate(Schema):
    body: Body


class MessagePage(msgspec.Struct):
    items: list[MessageRead]
    limit: int


class ReadMarker(Schema):
    seq: Seq
