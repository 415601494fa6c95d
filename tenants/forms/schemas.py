"""Bodies of /forms, /form-responses and the public form routes."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec

from atrium.platform.web.bodies import Schema, name_text
from atrium.platform.web.validation import anchored
from atrium.tenants.forms.fields import MAX_FIELDS, definition_rules

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType

Title = name_text()
Description = Annotated[str, msgspec.Meta(max_length=20_000)]
Status = Annotated[
    Literal["draft", "open", "closed"],
    msgspec.Meta(description="Only an `open` form takes responses (else 409)."),
]
Public = Annotated[
    bool,
    msgspec.Meta(
        description="Anyone may answer without a token at /public/forms/{id} while the form is open."
    ),
]
OwnerId = Annotated[uuid.UUID, msgspec.Meta(description="The user who owns the row; the caller by default.")]
Version = Annotated[int, msgspec.Meta(description="Set by the server: 1, then +1 whenever `fields` change.")]
ResponseCount = Annotated[int, msgspec.Meta(description="Set by the server: the form's responses.")]


class FormField(msgspec.Struct, omit_defaults=True):
    """One question of a form."""

    key: Annotated[
        str,
        msgspec.Meta(
            pattern=anchored(r"^[a-z][a-z0-9_]{0,62}$"),
            description="Unique in the form; the key of its answer.",
        ),
    ]
    label: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    type: Literal[
        "text", "textarea", "number", "email", "date", "select", "multiselect", "checkbox", "rating"
    ]
    # Always stated in answers (false by default when a definition is saved).
    required: bool
    options: (
        Annotated[
            list[str],
            msgspec.Meta(
                min_length=1,
                max_length=100,
                description="select and multiselect only: 1-100 distinct strings.",
            ),
        ]
        | None
    ) = None
    min: (
        Annotated[
            int | float,
            msgspec.Meta(
                description=(
                    "number: the least value; rating: the lowest mark (1 by default, 0-10); "
                    "text and textarea: the least length."
                )
            ),
        ]
        | None
    ) = None
    max: (
        Annotated[
            int | float,
            msgspec.Meta(
                description=(
                    "number: the greatest value; rating: the highest mark (5 by default, 0-10); "
                    "text and textarea: the greatest length (1,000 and 20,000 at most and by default)."
                )
            ),
        ]
        | None
    ) = None
    help: str | None = None


# Field definitions arrive as plain JSON and are checked by fields.check_fields, which
# names every bad definition at once: a list of FormField would stop at the first.
FieldsIn = Annotated[
    list[Any],
    msgspec.Meta(
        # For the document only (Litestar's schema_extra): each item is a FormField, 1 to 100.
        extra_json_schema={
            "description": (
                "1-100 definitions (FormField): key, label, type, required, options, min, max, help."
            ),
            "extra": {
                # A plain mapping: msgspec keeps its Meta's values as builtins.
                "items": {"$ref": "#/components/schemas/FormField"},
                "min_items": 1,
                "max_items": MAX_FIELDS,
            },
        }
    ),
]
Answers = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=(
            "`{key: value}` for the form's fields: text, number, `YYYY-MM-DD`, one option, a list of "
            'options, true/false. `""`, null and `[]` count as missing.'
        )
    ),
]


class FormRead(msgspec.Struct):
    id: uuid.UUID
    owner_id: OwnerId
    title: str
    description: str | None
    status: Status
    public: Public
    fields: list[FormField]
    version: Version
    response_count: ResponseCount
    created_at: datetime.datetime
    updated_at: datetime.datetime


class FormCreate(Schema):
    title: Title
    fields: FieldsIn
    description: Description | None = None
    status: Status = "draft"
    public: Public = False
    owner_id: OwnerId | None = None

    body_rules = (definition_rules,)


class FormUpdate(Schema):
    title: Title | Unset = UNSET
    description: Description | Unset | None = UNSET
    status: Status | Unset = UNSET
    public: Public | Unset = UNSET
    fields: FieldsIn | Unset = UNSET
    owner_id: OwnerId | Unset = UNSET

    body_rules = (definition_rules,)


class PublicForm(msgspec.Struct):
    """What anyone may read of an open public form."""

    id: uuid.UUID
    title: str
    description: str | None
    fields: list[FormField]
    version: Version


class FormResponseRead(msgspec.Struct):
    id: uuid.UUID
    form_id: uuid.UUID
    answers: Answers
    form_version: Annotated[
        int, msgspec.Meta(description="The form's version the answers were checked against.")
    ]
    owner_id: Annotated[
        uuid.UUID | None, msgspec.Meta(description="The respondent; null for an anonymous response.")
    ]
    created_at: datetime.datetime
    updated_at: datetime.datetime


class FormResponseCreate(Schema):
    form_id: uuid.UUID
    answers: Answers
    # A respondent other than the caller needs form-responses:manage (API.md §5). Not null:
    # a null respondent is an anonymous answer, which only the public form takes; here it
    # would have been recorded as the caller's without a word.
    owner_id: (
        Annotated[
            uuid.UUID,
            msgspec.Meta(
                description=(
                    "The respondent; the caller when left out. Not null: anonymous answers go to "
                    "`POST /public/forms/{id}/responses`."
                )
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class FormResponseUpdate(Schema):
    """New answers replace the old ones whole, checked against the form's current version."""

    answers: Answers | Unset = UNSET
    owner_id: Annotated[uuid.UUID, msgspec.Meta(description="The respondent.")] | Unset = UNSET


class PublicAnswers(Schema):
    answers: Answers


class PublicReceipt(msgspec.Struct):
    """The anonymous respondent's receipt: the response itself is visible to the form's owner only."""

    id: uuid.UUID
    form_id: uuid.UUID
    form_version: int
    created_at: datetime.datetime
