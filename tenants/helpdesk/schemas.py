"""Bodies of /help-desk and /help-desk/{id}/replies (API.md §10)."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec

from atrium.platform.web.bodies import Schema, name_text, written_text

Status = Literal["new", "open", "pending", "on_hold", "solved", "closed"]
# A ticket may be filed in any status but closed (a ticket is closed from solved).
FiledStatus = Literal["new", "open", "pending", "on_hold", "solved"]
Priority = Literal["low", "normal", "high", "urgent"]
Visibility = Literal["public", "internal"]
MAX_TAGS = 20
Subject = name_text()
Body = Annotated[str, msgspec.Meta(max_length=100_000)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=r"\S")]
# The list as sent may repeat tags (they are kept once each): MAX_TAGS counts distinct
# ones (``ticket_rules``); the list itself is only kept from growing without bound.
Tags = Annotated[
    list[Tag],
    msgspec.Meta(max_length=5 * MAX_TAGS, description="At most 20 distinct; stored lower-case, once each."),
]


def ticket_rules(values: dict[str, Any]) -> list[dict[str, str]]:
    """A body rule (bodies.Schema) of a ticket: one requester under both names, at most
    MAX_TAGS distinct tags (kept lower-cased, trimmed, once each, in the order first given),
    and no ``solved`` without an assignee. Each judged only when its fields are given."""
    errors = []
    requester, owner = values.get("requester_id"), values.get("owner_id")
    absent = (None, msgspec.UNSET)
    if requester not in absent and owner not in absent and requester != owner:
        errors.append({"field": "requester_id", "message": "differs from owner_id (they name one user)"})
    if values.get("tags") not in absent:
        kept = values["tags"] = list(dict.fromkeys(tag.strip().lower() for tag in values["tags"]))
        if len(kept) > MAX_TAGS:
            errors.append({"field": "tags", "message": f"at most {MAX_TAGS} distinct tags (lower-cased)"})
    if values.get("status") == "solved" and "assignee_id" in values and values["assignee_id"] is None:
        errors.append({"field": "status", "message": "solving needs an assignee (assignee_id)"})
    return errors


class TicketRead(msgspec.Struct):
    id: uuid.UUID
    owner_id: uuid.UUID
    requester_id: Annotated[uuid.UUID, msgspec.Meta(description="The requester: the same user as owner_id.")]
    subject: str
    body: str
    status: Status
    priority: Priority
    assignee_id: uuid.UUID | None
    tags: list[str]
    follow_up_of: Annotated[
        uuid.UUID | None, msgspec.Meta(description="The closed ticket this one follows up.")
    ]
    solved_at: Annotated[datetime.datetime | None, msgspec.Meta(description="Set by the server on solving.")]
    closed_at: Annotated[datetime.datetime | None, msgspec.Meta(description="Set by the server on closing.")]
    created_at: datetime.datetime
    updated_at: datetime.datetime


class TicketCreate(Schema):
    """A new ticket starts ``new``, or where an agent files it; its status moves by ``PATCH``."""

    subject: Subject
    body: Body = ""
    status: Annotated[
        FiledStatus,
        msgspec.Meta(description="Default new; another needs help-desk:manage, solved an assignee."),
    ] = "new"
    priority: Priority = "normal"
    # The requester; another user than the caller needs help-desk:manage. Either name works.
    owner_id: uuid.UUID | None = None
    requester_id: Annotated[uuid.UUID | None, msgspec.Meta(description="Same as owner_id.")] = None
    assignee_id: Annotated[
        uuid.UUID | None,
        msgspec.Meta(description="A user holding help-desk:manage; setting it needs manage."),
    ] = None
    tags: Tags = msgspec.field(default_factory=list)
    follow_up_of: Annotated[uuid.UUID | None, msgspec.Meta(description="A closed ticket.")] = None

    body_rules = (ticket_rules,)


class TicketUpdate(Schema):
    """Requesters may change ``subject`` and ``body`` and move their ticket to ``solved``;
    everything else needs help-desk:manage. A closed ticket never changes (409)."""

    subject: Subject | msgspec.UnsetType = msgspec.UNSET
    body: Body | msgspec.UnsetType = msgspec.UNSET
    status: Status | msgspec.UnsetType = msgspec.UNSET
    priority: Priority | msgspec.UnsetType = msgspec.UNSET
    owner_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    requester_id: uuid.UUID | msgspec.UnsetType = msgspec.UNSET
    assignee_id: uuid.UUID | msgspec.UnsetType | None = msgspec.UNSET
    tags: Tags | msgspec.UnsetType = msgspec.UNSET

    body_rules = (ticket_rules,)


class ReplyRead(msgspec.Struct):
    id: uuid.UUID
    ticket_id: uuid.UUID
    owner_id: Annotated[uuid.UUID, msgspec.Meta(description="The author.")]
    body: str
    visibility: Visibility
    created_at: datetime.datetime
    updated_at: datetime.datetime


class ReplyPage(msgspec.Struct):
    items: list[ReplyRead]
    total: int
    limit: int
    offset: int


ReplyBody = written_text(100_000)


class ReplyCreate(Schema):
    body: ReplyBody
    visibility: Annotated[
        Visibility, msgspec.Meta(description="`internal` replies are seen by help-desk:manage holders only.")
    ]
