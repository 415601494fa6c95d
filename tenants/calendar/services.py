"""What is special about events: time zones, recurrence, attendees, windows, feeds."""

from __future__ import annotations

import datetime
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert

from atrium.platform.db.read_transaction import ReadTransaction
from atrium.platform.web.errors import problem
from atrium.platform.web.listing import ListRequest
from atrium.platform.web.services import CrudService
from atrium.tenants.calendar.models import Event, EventFeedToken
from atrium.tenants.calendar.recurrence import (
    Series,
    in_utc,
)
from atrium.tenants.calendar.rules import event_rules
from atrium.tenants.identity.models import User

# UTC under the names the driver may give it (ZoneInfo keeps one instance per name):
# times in them are answered as they are read, and serialise as UTC ("Z").
UTC = datetime.UTC
_UTC_ZONES = (UTC, ZoneInfo("UTC"), ZoneInfo("Etc/UTC"))
# The fields that decide an event's occurrences.
TIMING = ("starts_at", "ends_at", "all_day", "time_zone", "recurrence")


class EventService(CrudService[Event]):
    model = Event

    async def _check(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every bad field in one 422; then the rule stored normalized and the series' end."""
        errors = event_rules(values)
        attendees = values.get("attendee_ids") or []
        if attendees and not any(error["field"] == "attendee_ids" for error in errors):
            found = await self.session.scalar(select(func.count()).where(User.id.in_(attendees)))
            if found != len(attendees):
                errors.append(
                    {"field": "attendee_ids", "message": "names a user who does not exist in this tenant"}
                )
        if errors:
            raise problem(422, "The event is not valid.", errors=errors)
        values["series_ends_at"] = Series(
            values["starts_at"],
            values["ends_at"],
            values["time_zone"],
            values["all_day"],
            values.get("recurrence"),
        ).series_ends_at()
        return values

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        if values.get("attendee_ids") is None:
            values["attendee_ids"] = []
        return await self._check(values)

    async def prepare_update(self, item: Event, changes: dict[str, Any]) -> dict[str, Any]:
        if not any(name in changes for name in (*TIMING, "attendee_ids")):
            return changes
        merged = {name: changes.get(name, getattr(item, name)) for name in (*TIMING, "attendee_ids")}
        if "attendee_ids" not in changes:
            merged["attendee_ids"] = None  # unchanged: checked when they were set
        checked = await self._check(merged)
        for name in (*TIMING, "series_ends_at"):
            changes[name] = checked[name]
        return changes


def series_of(row: Sequence[Any]) -> Series:
    """A ``Series`` from (starts_at, ends_at, time_zone, all_day, recurrence)."""
    return Series(row[0], row[1], row[2], row[3], row[4])


_TIMES = (Event.starts_at, Event.ends_at, Event.time_zone, Event.all_day, Event.recurrence)
_DIALECT = postgresql.psycopg.dialect()  # type: ignore[attr-defined]


def _compiled(statement: Any) -> str:
    return str(statement.compile(dialect=_DIALECT))


def _in_window(statement: Any) -> Any:
    return statement.where(
        Event.series_ends_at > postgresql_param("from"), Event.starts_at < postgresql_param("to")
    )


def postgresql_param(name: str) -> Any:
    return bindparam(name, type_=Event.starts_at.type)


# Recurring events whose series overlaps the window: expanded to see which have nothing in it.
RECURRING_IN_WINDOW = _compiled(_in_window(select(Event.id, *_TIMES).where(Event.recurrence.is_not(None))))
# Every event whose series overlaps the window, for its occurrences.
EVENTS_IN_WINDOW = _compiled(_in_window(select(Event.id, Event.title, *_TIMES)))


async def without_occurrences(
    reads: ReadTransaction, request: ListRequest, caller: dict[str, Any]
) -> list[uuid.UUID]:
    """The recurring events whose series spans the list's window but none of whose
    occurrences falls in it: left out of ``?from=&to=`` (ResourceSpec.refine_window)."""
    window_from = in_utc(request.window[0] or datetime.datetime.min.replace(tzinfo=UTC), earliest=True)
    window_to = in_utc(request.window[1] or datetime.datetime.max.replace(tzinfo=UTC), earliest=False)
    rows = await reads.fetch_all(RECURRING_IN_WINDOW, {"from": window_from, "to": window_to})
    return [
        row[0] for row in rows if next(series_of(row[1:]).occurrences(window_from, window_to), None) is None
    ]


async def occurrences_in(
    reads: ReadTransaction, window_from: datetime.datetime, window_to: datetime.datetime
) -> list[tuple[uuid.UUID, str, datetime.datetime, datetime.datetime, bool, str]]:
    """Every occurrence in the window, in start order (then by event, for a stable order)."""
    rows = await reads.fetch_all(EVENTS_IN_WINDOW, {"from": window_from, "to": window_to})
    if not rows:
        return []
    # Every time is given in one zone: the driver's (the session's TimeZone), kept as is
    # where it is UTC under another name. Aware times of one tzinfo compare as plain ones,
    # where two zones cost an offset lookup for each side of every comparison and sort step:
    # most of this function's time over a month of 10,000 events.
    read_in = rows[0][2].tzinfo
    out = read_in if read_in in _UTC_ZONES else UTC
    window = (window_from.astimezone(read_in), window_to.astimezone(read_in))
    found = []
    for event_id, title, starts_at, ends_at, time_zone, all_day, recurrence in rows:
        if recurrence is None:
            # A single event: no Series to build, only the window to check (most rows).
            if ends_at > window[0] and starts_at < window[1]:
                start, end = starts_at.astimezone(out), ends_at.astimezone(out)
                found.append((event_id, title, start, end, all_day, time_zone))
            continue
        series = Series(starts_at, ends_at, time_zone, all_day, recurrence)
        for start, end in series.in_window(window_from, window_to, out):
            found.append((event_id, title, start, end, all_day, time_zone))
    # UUIDs order as their text does; compared only between occurrences that start together.
    found.sort(key=itemgetter(2, 0))
    return found


def token_hash(token: str) -> str:
    # A token has 256 random bits: one unsalted SHA-256 is enough to keep a stolen
    # table from giving working addresses, and lets the feed find its row by the hash.
    return hashlib.sha256(token.encode()).hexdigest()


def new_feed_token(user_id: uuid.UUID) -> tuple[str, Any]:
    """A fresh token and the statement that makes it the user's only one."""
    token = secrets.token_urlsafe(32)
    statement = insert(EventFeedToken).values(user_id=user_id, token_hash=token_hash(token))
    statement = statement.on_conflict_do_update(
        index_elements=[EventFeedToken.user_id],
        set_={"token_hash": statement.excluded.token_hash, "created_at": func.now()},
    )
    return token, statement
