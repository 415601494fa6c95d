"""Request and response bodies of /events."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated

import msgspec

from atrium.platform.web.bodies import Schema, name_text
from atrium.tenants.calendar.rules import event_rules
from atrium.tenants.discussions import OwnerId

Title = name_text()
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
Location = Annotated[str, msgspec.Meta(max_length=500)]
TimeZone = Annotated[
    str, msgspec.Meta(max_length=64, description="An IANA time zone name (`Europe/Berlin`); default `UTC`.")
]
AllDay = Annotated[
    bool, msgspec.Meta(description="True: `starts_at` and `ends_at` are midnights in `time_zone`.")
]
AttendeeIds = Annotated[
    list[uuid.UUID], msgspec.Meta(max_length=1000, description="Users of this tenant, each once.")
]
Recurrence = Annotated[
    str,
    msgspec.Meta(
        max_length=1000,
        description=(
            "An RFC 5545 RRULE value (`FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10`), expanded in `time_zone`; "
            "FREQ DAILY, WEEKLY, MONTHLY or YEARLY; not COUNT with UNTIL. Null: one occurrence."
        ),
    ),
]
# RFC 3339: a time carries its offset (a naive one is 422, API.md §5).
Instant = Annotated[
    datetime.datetime, msgspec.Meta(tz=True, description="RFC 3339 with an offset; answered in UTC.")
]
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class EventRead(msgspec.Struct):
    id: uuid.UUID
    title: str
    description: str | None
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    all_day: AllDay
    time_zone: TimeZone
    location: str | None
    attendee_ids: AttendeeIds
    recurrence: Recurrence | None
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


class EventCreate(Schema):
    title: Title
    starts_at: Instant
    ends_at: Instant
    description: Description | None = None
    all_day: AllDay = False
    time_zone: TimeZone = "UTC"
    location: Location | None = None
    attendee_ids: AttendeeIds | None = None
    recurrence: Recurrence | None = None
    owner_id: OwnerId | None = None

    body_rules = (event_rules,)


class EventUpdate(Schema):
    title: Title | Unset = UNSET
    starts_at: Instant | Unset = UNSET
    ends_at: Instant | Unset = UNSET
    description: Description | Unset | None = UNSET
    all_day: AllDay | Unset = UNSET
    time_zone: TimeZone | Unset = UNSET
    location: Location | Unset | None = UNSET
    attendee_ids: AttendeeIds | Unset = UNSET
    recurrence: Recurrence | Unset | None = UNSET
    owner_id: OwnerId | Unset = UNSET

    body_rules = (event_rules,)


class Occurrence(msgspec.Struct):
    event_id: uuid.UUID
    title: str
    starts_at: datetime.datetime
    ends_at: datetime.datetime
    all_day: bool
    time_zone: str


class Occurrences(msgspec.Struct):
    items: list[Occurrence]


class FeedAddress(msgspec.Struct):
    url: Annotated[
        str,
        msgspec.Meta(
            description="The caller's secret iCalendar feed (`/events/feed/<token>.ics`, no bearer needed); "
            "a new one replaces it."
        ),
    ]
