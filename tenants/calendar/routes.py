"""/events: the CRUD conventions, plus occurrences and iCalendar feeds.

Not ``from __future__ import annotations``: Litestar reads the handlers' annotations.
"""

import datetime
import uuid
from datetime import timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from icalendar import Calendar, vRecur
from icalendar import Event as VEvent
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.db.read_transaction import READS_ON_DRIVER, ReadTransaction
from atrium.platform.security.callers import load_auth_user
from atrium.platform.security.guards import requires
from atrium.platform.security.permissions import read
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.errors import problem, problem_responses
from atrium.platform.web.idempotency import answer_once
from atrium.platform.web.listing import Filter, ListRequest, parse_instant, query_problems
from atrium.platform.web.query import REQUIRED_QUERY
from atrium.platform.web.resources import ResourceSpec
from atrium.tenants.calendar import schemas as s
from atrium.tenants.calendar.models import Event, EventFeedToken
from atrium.tenants.calendar.recurrence import HORIZON, NEVER, in_utc
from atrium.tenants.calendar.services import (
    EventService,
    new_feed_token,
    occurrences_in,
    token_hash,
    without_occurrences,
)

EVENTS = "events"
MAX_WINDOW = datetime.timedelta(days=366)
FEED_SUFFIX = ".ics"
# Litestar adds the charset of a text type itself: naming it here sent it twice.
CALENDAR_TYPE = "text/calendar"
WINDOW_END = "The window's {} (RFC 3339, required); the window spans at most 366 days."


def _instant(raw: str | None, name: str, errors: list[dict[str, str]]) -> datetime.datetime | None:
    if raw is None:
        errors.append({"field": name, "message": "required", "source": "query"})
        return None
    return parse_instant(raw, name, errors)


@get(
    "/occurrences",
    guards=[requires(read(EVENTS))],
    operation_id="list_event_occurrences",
    summary="Every occurrence in a window, recurring events expanded in their own time zone",
    opt={READS_ON_DRIVER: True, REQUIRED_QUERY: ("from", "to")},
    responses=problem_responses(401, 403, 422, 503),
)
async def list_occurrences(
    request: Request,
    reads: NamedDependency[ReadTransaction],
    from_: Annotated[str | None, QueryParameter(name="from", description=WINDOW_END.format("start"))] = None,
    to: Annotated[str | None, QueryParameter(description=WINDOW_END.format("end"))] = None,
) -> s.Occurrences:
    errors = query_problems(request.query_params, ("from", "to"), "this", once=("from", "to"))
    window_from = _instant(from_, "from", errors)
    window_to = _instant(to, "to", errors)
    if window_from and window_to:
        window_from, window_to = in_utc(window_from, earliest=True), in_utc(window_to, earliest=False)
    if window_from and window_to and not (timedelta(0) < window_to - window_from <= MAX_WINDOW):
        errors.append({"field": "to", "message": "later than from, by at most 366 days", "source": "query"})
    if errors or window_from is None or window_to is None:
        raise problem(422, "The window is not valid.", errors=errors)
    found = await occurrences_in(reads, window_from, window_to)
    await reads.close()
    return s.Occurrences(items=[s.Occurrence(*o) for o in found])


def _host(request: Request) -> str:
    # As the tenant is resolved (API.md §1): any case, a trailing dot or none. Spelled
    # otherwise, one event would have two UIDs and calendar apps would show it twice.
    return (request.url.hostname or "localhost").lower().rstrip(".")


def _calendar(events: list[Event], host: str) -> bytes:
    """The events as an RFC 5545 calendar, each in its own zone (with its VTIMEZONE)."""
    calendar = Calendar()
    calendar.add("prodid", "-//Atrium//Calendar//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    for event in events:
        tz = ZoneInfo(event.time_zone)
        component = VEvent()
        component.add("uid", f"{event.id}@{host}")
        component.add("dtstamp", event.updated_at.astimezone(datetime.UTC))
        component.add("summary", event.title)
        start, end = event.starts_at.astimezone(tz), event.ends_at.astimezone(tz)
        if event.all_day:
            component.add("dtstart", start.date())
            component.add("dtend", end.date())
        else:
            component.add("dtstart", start)
            component.add("dtend", end)
        if event.recurrence:
            component.add("rrule", vRecur.from_ical(event.recurrence))
        if event.description:
            component.add("description", event.description)
        if event.location:
            component.add("location", event.location)
        calendar.add_component(component)
    calendar.add_missing_timezones(last_date=_zones_until(events))
    return calendar.to_ical()


def _zones_until(events: list[Event]) -> datetime.date:
    """How far the VTIMEZONEs' transitions must run: past the last event's end, and a
    decade on for a series without one (icalendar stops at 2038 by default, which put a
    2040 meeting an hour off in clients that read the zone from the feed)."""
    years = [2038]
    for event in events:
        end = event.series_ends_at or event.ends_at
        years.append(datetime.date.today().year + 10 if end >= NEVER else end.year + 1)
    return datetime.date(min(max(years), HORIZON.year), 1, 1)


async def _feed(session: AsyncSession, host: str) -> Response[bytes]:
    events = list(await session.scalars(select(Event).order_by(Event.starts_at, Event.id)))
    return Response(_calendar(events, host), media_type=CALENDAR_TYPE)


@get(
    "/events.ics",
    guards=[requires(read(EVENTS))],
    operation_id="get_events_calendar",
    summary="The events the caller sees, as an iCalendar (RFC 5545) feed",
    media_type=CALENDAR_TYPE,
    tags=[EVENTS],
    security=[{"BearerToken": []}],
    responses=problem_responses(401, 403, 503),
)
async def calendar_feed(db_session: NamedDependency[AsyncSession], request: Request) -> Response[bytes]:
    return await _feed(db_session, _host(request))


@post(
    "/feed-token",
    guards=[requires(read(EVENTS))],
    operation_id="create_event_feed_token",
    summary="A new secret feed address for calendar apps (the previous one stops working)",
    status_code=200,
    responses=problem_responses(401, 403, 409, 422, 503),
)
async def create_feed_token(
    db_session: NamedDependency[AsyncSession], tenant: NamedDependency[ResolvedTenant], request: Request
) -> Response[s.FeedAddress]:
    port = request.url.port
    base = f"{request.url.scheme}://{_host(request)}{f':{port}' if port else ''}"

    async def issue(before_commit: Any) -> s.FeedAddress:
        token, statement = new_feed_token(request.user.id)
        await db_session.execute(statement)
        address = s.FeedAddress(url=f"{base}/events/feed/{token}{FEED_SUFFIX}")
        if before_commit is not None:
            await before_commit(address)
        await db_session.commit()
        return address

    return await answer_once(request, db_session, tenant, issue, lambda address: address, status=200)


@get(
    "/events/feed/{name:str}",
    exclude_from_auth=True,
    tags=[EVENTS],
    security=[{}],  # public: the secret address is the credential
    operation_id="get_events_feed",
    summary="A user's secret iCalendar feed (no bearer: for calendar apps)",
    media_type=CALENDAR_TYPE,
    responses=problem_responses(404, 503),
)
async def public_feed(
    db_session: NamedDependency[AsyncSession], request: Request, name: FromPath[str]
) -> Response[bytes]:
    token = name.removesuffix(FEED_SUFFIX) if name.endswith(FEED_SUFFIX) else None
    user_id: uuid.UUID | None = None
    if token:
        user_id = await db_session.scalar(
            select(EventFeedToken.user_id).where(EventFeedToken.token_hash == token_hash(token))
        )
    holder = await load_auth_user(db_session, user_id) if user_id is not None else None
    # The feed shows what its user may read now: one who lost the permission has no feed.
    if holder is None or not holder.can(read(EVENTS)):
        raise problem(404, "No such feed.")
    return await _feed(db_session, _host(request))


def events_in_window_first(request: ListRequest, columns: Any) -> list[Any]:
    """With a window, by start; otherwise newest first."""
    if request.window != (None, None):
        return [columns.starts_at.asc(), columns.id.asc()]
    return [columns.created_at.desc(), columns.id.desc()]


EVENTS_SPEC = ResourceSpec(
    EVENTS,
    EventService,
    s.EventRead,
    s.EventCreate,
    s.EventUpdate,
    extra_handlers=[list_occurrences, create_feed_token],
    filters=[Filter("attendee_id", column="attendee_ids", element=True), Filter("owner_id")],
    sort=["starts_at"],
    window=("starts_at", "series_ends_at"),
    refine_window=without_occurrences,
    default_order=events_in_window_first,
    description=(
        "Calendar events in IANA time zones, optionally recurring (an RFC 5545 RRULE, expanded in "
        "the event's zone, so a weekly 09:00 meeting stays 09:00 across daylight-saving changes). "
        "`from`/`to` lists the events with an occurrence in the window."
    ),
    member="write",
)


def calendar_routers(_settings: Any) -> list[Router]:
    # Outside the /events router, whose bearer requirement the public feed must not inherit.
    return [Router(path="/", route_handlers=[calendar_feed, public_feed])]
