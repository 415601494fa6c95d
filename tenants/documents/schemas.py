"""Request and response bodies of /documents and /document-comments."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated

import msgspec

from atrium.platform.web.bodies import Schema, listed_once, name_text, written_text
from atrium.platform.web.validation import MAX_BYTES
from atrium.tenants.discussions import OwnerId
from atrium.tenants.documents.models import BODY_MAX_BYTES, TITLE_MAX

Title = name_text(TITLE_MAX)
Body = Annotated[
    str,
    msgspec.Meta(
        max_length=BODY_MAX_BYTES,
        description="Markdown text, at most 1 MiB (UTF-8).",
        extra={MAX_BYTES: BODY_MAX_BYTES},
    ),
]
ProjectId = Annotated[
    uuid.UUID,
    msgspec.Meta(
        description="The project the document belongs to (one the caller sees); archived: read-only."
    ),
]
MediaIds = Annotated[
    list[uuid.UUID], msgspec.Meta(max_length=1000, description="Attachments: ids of media of this tenant.")
]
MEDIA_ONCE = listed_once("media_ids", "a media row")
Version = Annotated[
    int, msgspec.Meta(description="Server-set: 1 on create, one more on every change; every version is kept.")
]
CommentBody = written_text(10_000)
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class DocumentRead(msgspec.Struct):
    id: uuid.UUID
    title: str
    body: str
    project_id: ProjectId | None
    media_ids: MediaIds
    version: Version
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


class DocumentCreate(Schema):
    title: Title
    body: Body = ""
    project_id: ProjectId | None = None
    media_ids: MediaIds | None = None
    owner_id: OwnerId | None = None

    body_rules = (MEDIA_ONCE,)


class DocumentUpdate(Schema):
    title: Title | Unset = UNSET
    body: Body | Unset = UNSET
    project_id: ProjectId | Unset | None = UNSET
    media_ids: MediaIds | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET

    body_rules = (MEDIA_ONCE,)


class DocumentVersionRead(msgspec.Struct):
    version: int
    title: str
    body: str
    editor_id: Annotated[
        uuid.UUID | None,
        msgspec.Meta(description="The user who wrote this version; null once that user is deleted."),
    ]
    created_at: datetime.datetime


class DocumentVersionPage(msgspec.Struct):
    items: list[DocumentVersionRead]
    total: int
    limit: int
    offset: int


class DocumentCommentRead(msgspec.Struct):
    id: uuid.UUID
    document_id: uuid.UUID
    body: str
    document_version: Annotated[
        int, msgspec.Meta(description="Server-set: the document's version when the comment was made.")
    ]
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


class DocumentCommentCreate(Schema):
    document_id: uuid.UUID
    body: CommentBody
    owner_id: OwnerId | None = None


class DocumentCommentUpdate(Schema):
    body: CommentBody | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET
