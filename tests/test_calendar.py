"""Events (API.md §7): time zones, recurrence across daylight saving, windows, feeds."""

from __future__ import annotations

import datetime
import hashlib
import uuid
from typing import Any

import httpx
import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from atrium.tenants.calendar.recurrence import RecurrenceError, Series, normalize
from tests.api import Api, Headers, TenantUser, add_user, assert_problem, error_fields
from tests.conftest import MadeTenant

pytest_plugins = ["tests.api"]


@pytest.fixture(scope="module")
async def alice(api: Api, owner_a: Headers) -> TenantUser:
    _, client = api
    return await add_user(client, owner_a, role="Member")


def _tag() -> str:
    return uuid.uuid4().hex[:8]


async def event(client: httpx.AsyncClient, headers: Headers, **fields: Any) -> dict[str, Any]:
    body = {
        "title": f"Event {_tag()}",
        "starts_at": "2026-03-16T08:00:00Z",
        "ends_at": "2026-03-16T09:00:00Z",
        **fields,
    }
    response = await client.post("/events", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def occurrences(
    client: httpx.AsyncClient, headers: Headers, start: str, end: str
) -> list[dict[str, Any]]:
    response = await client.get("/events/occurrences", params={"from": start, "to": end}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def listed(client: httpx.AsyncClient, headers: Headers, **params: Any) -> list[str]:
    response = await client.get("/events", params={"limit": 200, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["items"]]


async def test_a_weekly_meeting_stays_at_nine_local_across_daylight_saving(
    api: Api, owner_a: Headers
) -> None:
    _, client = api
    # 09:00 in Berlin is 08:00Z in winter; Berlin moves to summer time on 29 March 2026.
    meeting = await event(
        client,
        owner_a,
        title=f"Stand-up {_tag()}",
        time_zone="Europe/Berlin",
        recurrence="FREQ=WEEKLY;BYDAY=MO;COUNT=4",
    )
    found = [
        o
        for o in await occurrences(client, owner_a, "2026-03-01T00:00:00Z", "2026-05-01T00:00:00Z")
        if o["event_id"] == meeting["id"]
    ]
    assert [(o["starts_at"], o["ends_at"]) for o in found] == [
        ("2026-03-16T08:00:00Z", "2026-03-16T09:00:00Z"),
        ("2026-03-23T08:00:00Z", "2026-03-23T09:00:00Z"),
        ("2026-03-30T07:00:00Z", "2026-03-30T08:00:00Z"),
        ("2026-04-06T07:00:00Z", "2026-04-06T08:00:00Z"),
    ]
    assert {o["time_zone"] for o in found} == {"Europe/Berlin"}


async def test_occurrences_come_in_start_order_and_the_window_is_capped(api: Api, owner_a: Headers) -> None:
    _, client = api
    late = await event(client, owner_a, starts_at="2030-01-02T10:00:00Z", ends_at="2030-01-02T11:00:00Z")
    early = await event(client, owner_a, starts_at="2030-01-01T10:00:00Z", ends_at="2030-01-01T11:00:00Z")
    daily = await event(
        client,
        owner_a,
        starts_at="2030-01-01T09:00:00Z",
        ends_at="2030-01-01T09:30:00Z",
        recurrence="FREQ=DAILY",
    )
    found = await occurrences(client, owner_a, "2030-01-01T00:00:00Z", "2030-01-03T00:00:00Z")
    assert [o["event_id"] for o in found] == [daily["id"], early["id"], daily["id"], late["id"]]
    starts = [o["starts_at"] for o in found]
    assert starts == sorted(starts)

    too_long = await client.get(
        "/events/occurrences",
        params={"from": "2030-01-01T00:00:00Z", "to": "2031-01-03T00:00:00Z"},
        headers=owner_a,
    )
    assert error_fields(assert_problem(too_long, 422)) == {"to"}
    missing = await client.get("/events/occurrences", params={"to": "x", "nope": "1"}, headers=owner_a)
    assert error_fields(assert_problem(missing, 422)) == {"from", "to", "nope"}
    twice = [
        ("from", "2030-01-01T00:00:00Z"),
        ("from", "2030-02-01T00:00:00Z"),
        ("to", "2030-03-01T00:00:00Z"),
    ]
    assert error_fields(
        assert_problem(await client.get("/events/occurrences", params=twice, headers=owner_a), 422)
    ) == {"from"}


async def test_from_to_lists_events_with_an_occurrence_in_the_window(api: Api, owner_a: Headers) -> None:
    _, client = api
    # Mondays only: a window from Tuesday to Sunday holds none of its occurrences.
    mondays = await event(
        client,
        owner_a,
        starts_at="2031-01-06T10:00:00Z",
        ends_at="2031-01-06T11:00:00Z",
        recurrence="FREQ=WEEKLY",
    )
    once = await event(client, owner_a, starts_at="2031-01-08T10:00:00Z", ends_at="2031-01-08T11:00:00Z")
    midweek = await listed(client, owner_a, **{"from": "2031-01-14T00:00:00Z", "to": "2031-01-19T00:00:00Z"})
    assert mondays["id"] not in midweek and once["id"] not in midweek
    week = await listed(client, owner_a, **{"from": "2031-01-06T00:00:00Z", "to": "2031-01-12T00:00:00Z"})
    assert week.index(mondays["id"]) < week.index(once["id"]), "by start with a window"
    later = await listed(client, owner_a, **{"from": "2035-06-04T00:00:00Z", "to": "2035-06-05T00:00:00Z"})
    assert mondays["id"] in later  # 4 June 2035 is a Monday, years on


async def test_a_series_started_years_ago_keeps_its_wall_time_across_daylight_saving(
    api: Api, owner_a: Headers
) -> None:
    """Expanded from near the window (recurrence.near), not from 2015: still 09:00 in Berlin
    on each side of the change to summer time (29 March 2026), and on the right Mondays."""
    _, client = api
    meeting = await event(
        client,
        owner_a,
        title=f"Since 2015 {_tag()}",
        time_zone="Europe/Berlin",
        starts_at="2015-01-05T08:00:00Z",  # a Monday, 09:00 in Berlin
        ends_at="2015-01-05T09:00:00Z",
        recurrence="FREQ=WEEKLY;INTERVAL=2",
    )
    found = [
        (o["starts_at"], o["ends_at"])
        for o in await occurrences(client, owner_a, "2026-03-10T00:00:00Z", "2026-04-20T00:00:00Z")
        if o["event_id"] == meeting["id"]
    ]
    # Every other Monday from 5 January 2015: 16 March 2026 is one (584 weeks on).
    assert found == [
        ("2026-03-16T08:00:00Z", "2026-03-16T09:00:00Z"),
        ("2026-03-30T07:00:00Z", "2026-03-30T08:00:00Z"),
        ("2026-04-13T07:00:00Z", "2026-04-13T08:00:00Z"),
    ]


_ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago")
_BYDAY = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@st.composite
def _series_and_window(draw: st.DrawFn) -> tuple[Series, datetime.datetime, datetime.datetime]:
    freq = draw(st.sampled_from(("DAILY", "WEEKLY", "MONTHLY", "YEARLY")))
    parts = [f"FREQ={freq}", f"INTERVAL={draw(st.integers(1, 5))}"]
    if draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(_BYDAY), min_size=1, max_size=3, unique=True))
        parts.append("BYDAY=" + ",".join(days))
        if freq in ("MONTHLY", "YEARLY") and draw(st.booleans()):
            parts.append(f"BYSETPOS={draw(st.sampled_from((1, 2, -1)))}")
    elif freq == "MONTHLY" and draw(st.booleans()):
        parts.append(f"BYMONTHDAY={draw(st.sampled_from((1, 15, 29, 31, -1)))}")
    minutes = draw(st.integers(0, 24 * 60 - 1))
    year = datetime.datetime(draw(st.integers(1995, 2025)), 1, 1, tzinfo=datetime.UTC)
    starts_at = year + datetime.timedelta(days=draw(st.integers(0, 365)), minutes=minutes)
    if draw(st.booleans()):
        until = starts_at + datetime.timedelta(days=draw(st.integers(1, 40 * 365)))
        parts.append(f"UNTIL={until:%Y%m%dT%H%M%SZ}")
    ends_at = starts_at + datetime.timedelta(minutes=draw(st.sampled_from((30, 60, 24 * 60, 3 * 24 * 60))))
    time_zone = draw(st.sampled_from(_ZONES))
    timing = Series(starts_at, ends_at, time_zone)
    try:
        rule = normalize(";".join(parts), timing)
    except RecurrenceError:
        rule = "FREQ=WEEKLY"
    window_from = starts_at + datetime.timedelta(days=draw(st.integers(-30, 40 * 365)))
    window_to = window_from + datetime.timedelta(days=draw(st.integers(1, 62)))
    return Series(starts_at, ends_at, time_zone, recurrence=rule), window_from, window_to


@settings(max_examples=300, deadline=None)
@given(_series_and_window())
def test_expanding_near_the_window_finds_what_expanding_from_the_start_does(
    case: tuple[Series, datetime.datetime, datetime.datetime],
) -> None:
    series, window_from, window_to = case
    rule, duration = series.rule(), series.wall_duration
    assert rule is not None
    expected = []
    for start in rule:  # the whole series from its first start, as the reference
        end = (start.replace(tzinfo=None) + duration).replace(tzinfo=start.tzinfo)
        if start >= window_to:
            break
        if end > window_from:
            expected.append((start.astimezone(datetime.UTC), end.astimezone(datetime.UTC)))
    assert list(series.occurrences(window_from, window_to)) == expected


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"recurrence": "FREQ=WEEKLY;COUNT=3;UNTIL=20260501T000000Z"}, {"recurrence"}),
        ({"recurrence": "every monday"}, {"recurrence"}),
        ({"recurrence": "FREQ=WEEKLY;BYDAY=XX"}, {"recurrence"}),
        ({"recurrence": "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"}, {"recurrence"}),
        # Were 500s: an UNTIL past the horizon overflowed, an nth weekday no month has
        # broke dateutil's month tables.
        ({"recurrence": "FREQ=DAILY;UNTIL=99991231"}, {"recurrence"}),
        ({"recurrence": "FREQ=DAILY;UNTIL=99991231T235959Z"}, {"recurrence"}),
        ({"recurrence": "FREQ=MONTHLY;BYDAY=+8MO"}, {"recurrence"}),
        # Sub-daily under a DAILY name (86,400 occurrences a day).
        ({"recurrence": "FREQ=DAILY;BYHOUR=0,1,2;BYMINUTE=0,30"}, {"recurrence"}),
        ({"recurrence": "FREQ=DAILY;UNTIL=20250101T000000Z"}, {"recurrence"}),
        # 2026-03-16 is a Monday: a rule that does not yield it (RFC 5545 would add it anyway).
        ({"recurrence": "FREQ=WEEKLY;BYDAY=TU;COUNT=2"}, {"recurrence"}),
        # Parts RFC 5545 does not have or does not allow with this FREQ.
        ({"recurrence": "FREQ=YEARLY;BYEASTER=0"}, {"recurrence"}),
        ({"recurrence": "FREQ=DAILY;BYDAY=+1MO"}, {"recurrence"}),
        ({"recurrence": "FREQ=MONTHLY;BYWEEKNO=1"}, {"recurrence"}),
        ({"recurrence": "FREQ=DAILY;BYMONTHDAY=0"}, {"recurrence"}),
        ({"recurrence": "FREQ=DAILY;BYSETPOS=1"}, {"recurrence"}),
        ({"time_zone": "Mars/Olympus_Mons"}, {"time_zone"}),
        ({"ends_at": "2026-03-16T07:00:00Z", "time_zone": "Nowhere"}, {"ends_at", "time_zone"}),
        # A rule broken by itself is named beside broken times or zone.
        ({"time_zone": "Nowhere", "recurrence": "garbage"}, {"time_zone", "recurrence"}),
        (
            {"ends_at": "2026-03-16T07:00:00Z", "recurrence": "FREQ=DAILY;COUNT=2;UNTIL=20270101"},
            {"ends_at", "recurrence"},
        ),
        ({"title": "", "recurrence": "FREQ=HOURLY"}, {"title", "recurrence"}),
        ({"all_day": True}, {"starts_at", "ends_at"}),
        ({"starts_at": "0001-01-01T00:00:00Z", "recurrence": "FREQ=DAILY"}, {"starts_at"}),
        ({"starts_at": "2026-03-16T08:00:00Z", "ends_at": "9999-12-31T23:59:59Z"}, {"ends_at"}),
        ({"attendee_ids": [str(uuid.uuid4())]}, {"attendee_ids"}),
        # An owner no user is, beside another bad reference: both named.
        ({"attendee_ids": [str(uuid.uuid4())], "owner_id": str(uuid.uuid4())}, {"attendee_ids", "owner_id"}),
        # A field's type and the body's rules, named in one answer.
        ({"title": "", "ends_at": "2026-03-16T07:00:00Z"}, {"title", "ends_at"}),
        ({"title": 5, "time_zone": "Nowhere", "location": "x" * 501}, {"title", "time_zone", "location"}),
        ({"description": 1, "recurrence": "FREQ=HOURLY"}, {"description", "recurrence"}),
        ({"title": None, "attendee_ids": [str(uuid.UUID(int=1))] * 2}, {"title", "attendee_ids"}),
        ({"all_day": True, "extra": 1}, {"starts_at", "ends_at", "extra"}),
    ],
)
async def test_bad_events_are_422_naming_every_field(
    api: Api, owner_a: Headers, fields: dict[str, Any], bad: set[str]
) -> None:
    _, client = api
    assert await refused_fields(client, owner_a, fields) == bad


async def refused_fields(client: httpx.AsyncClient, headers: Headers, fields: dict[str, Any]) -> set[str]:
    """The fields a 422 names for an event made of ``fields`` over a valid one."""
    body = {"title": "x", "starts_at": "2026-03-16T08:00:00Z", "ends_at": "2026-03-16T09:00:00Z", **fields}
    return error_fields(assert_problem(await client.post("/events", json=body, headers=headers), 422))


async def test_attendees_are_users_of_this_tenant_each_once(
    api: Api, owner_a: Headers, owner_b: Headers, alice: TenantUser
) -> None:
    _, client = api
    other = (await client.get("/auth/me", headers=owner_b)).json()["user"]["id"]
    base = {"title": "x", "starts_at": "2026-03-16T08:00:00Z", "ends_at": "2026-03-16T09:00:00Z"}
    for attendees in ([other], [alice.id, alice.id]):
        response = await client.post("/events", json={**base, "attendee_ids": attendees}, headers=owner_a)
        assert error_fields(assert_problem(response, 422)) == {"attendee_ids"}
    made = await event(client, owner_a, attendee_ids=[alice.id])
    assert made["id"] in await listed(client, owner_a, attendee_id=alice.id)


async def test_all_day_events_and_a_normalised_until(api: Api, owner_a: Headers) -> None:
    _, client = api
    holiday = await event(
        client,
        owner_a,
        all_day=True,
        time_zone="America/New_York",
        starts_at="2026-07-03T04:00:00Z",
        ends_at="2026-07-04T04:00:00Z",
        recurrence="FREQ=YEARLY;UNTIL=20280703",
    )
    assert holiday["recurrence"] == "FREQ=YEARLY;UNTIL=20280703"
    timed = await event(client, owner_a, time_zone="Europe/Berlin", recurrence="freq=daily;until=20260320")
    assert timed["recurrence"] == "FREQ=DAILY;UNTIL=20260320T225959Z"
    days = [
        o
        for o in await occurrences(client, owner_a, "2026-03-15T00:00:00Z", "2026-03-25T00:00:00Z")
        if o["event_id"] == timed["id"]
    ]
    assert len(days) == 5  # 16 to 20 March


async def test_a_change_of_times_is_checked_with_the_rest_of_the_row(api: Api, owner_a: Headers) -> None:
    _, client = api
    made = await event(client, owner_a)
    refused = await client.patch(
        f"/events/{made['id']}", json={"ends_at": "2026-03-16T07:00:00Z"}, headers=owner_a
    )
    assert error_fields(assert_problem(refused, 422)) == {"ends_at"}
    moved = await client.patch(
        f"/events/{made['id']}", json={"recurrence": "FREQ=DAILY;COUNT=2"}, headers=owner_a
    )
    assert moved.status_code == 200, moved.text
    found = [
        o
        for o in await occurrences(client, owner_a, "2026-03-15T00:00:00Z", "2026-03-25T00:00:00Z")
        if o["event_id"] == made["id"]
    ]
    assert len(found) == 2


async def test_the_ics_feed_and_the_secret_address(api: Api, owner_a: Headers, alice: TenantUser) -> None:
    _, client = api
    meeting = await event(
        client, owner_a, time_zone="Europe/Berlin", recurrence="FREQ=WEEKLY;BYDAY=MO;COUNT=4"
    )
    feed = await client.get("/events.ics", headers=owner_a)
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(feed.content)
    host = owner_a["Host"].split(":")[0]
    found = [c for c in calendar.walk("VEVENT") if str(c["UID"]) == f"{meeting['id']}@{host}"]
    assert len(found) == 1
    assert found[0]["RRULE"].to_ical() == b"FREQ=WEEKLY;COUNT=4;BYDAY=MO"
    assert found[0]["DTSTART"].dt.tzinfo is not None and found[0]["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert any(str(tz["TZID"]) == "Europe/Berlin" for tz in calendar.walk("VTIMEZONE"))
    # The host spelled otherwise (case, a trailing dot) is the same tenant: the same UIDs.
    spelled = {**owner_a, "Host": owner_a["Host"].upper().replace(host.upper(), host.upper() + ".")}
    again = await client.get("/events.ics", headers=spelled)
    assert again.status_code == 200 and again.content == feed.content

    first = await client.post("/events/feed-token", headers=alice.headers)
    assert first.status_code == 200, first.text
    url = httpx.URL(first.json()["url"])
    assert url.path.startswith("/events/feed/") and url.path.endswith(".ics")
    public = await client.get(url.path, headers={"Host": owner_a["Host"]})
    assert public.status_code == 200 and public.content == feed.content

    second = await client.post("/events/feed-token", headers=alice.headers)
    assert_problem(await client.get(url.path, headers={"Host": owner_a["Host"]}), 404)
    new_path = httpx.URL(second.json()["url"]).path
    assert (await client.get(new_path, headers={"Host": owner_a["Host"]})).status_code == 200
    for guess in (
        "/events/feed/nothing.ics",
        "/events/feed/" + new_path.rsplit("/", 1)[1].removesuffix(".ics"),
    ):
        assert_problem(await client.get(guess, headers={"Host": owner_a["Host"]}), 404)


async def test_a_feed_address_works_only_on_its_own_tenant(
    api: Api, owner_a: Headers, owner_b: Headers
) -> None:
    _, client = api
    address = (await client.post("/events/feed-token", headers=owner_a)).json()["url"]
    path = httpx.URL(address).path
    assert (await client.get(path, headers={"Host": owner_a["Host"]})).status_code == 200
    assert_problem(await client.get(path, headers={"Host": owner_b["Host"]}), 404)


async def test_only_the_hash_of_a_feed_token_is_stored(
    api: Api, owner_a: Headers, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    _, client = api
    address = (await client.post("/events/feed-token", headers=owner_a)).json()["url"]
    token = httpx.URL(address).path.rsplit("/", 1)[1].removesuffix(".ics")
    with operator_engine.connect() as conn:
        stored = (
            conn.execute(text(f'SELECT token_hash FROM "{tenant_a.tenant.schema}".event_feed_tokens'))
            .scalars()
            .all()
        )
    assert stored and token not in stored
    assert hashlib.sha256(token.encode()).hexdigest() in stored


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        # RFC 3339 times carry an offset: a naive one is 422, never a 500.
        ({"starts_at": "2026-03-16T08:00:00", "ends_at": "2026-03-16T09:00:00"}, {"starts_at", "ends_at"}),
        ({"ends_at": "2026-03-16T09:00:00"}, {"ends_at"}),
        # Not an IANA zone name: the server's own zone under another name.
        ({"time_zone": "localtime"}, {"time_zone"}),
    ],
)
async def test_naive_times_and_non_iana_zones_are_422(
    api: Api, owner_a: Headers, fields: dict[str, Any], bad: set[str]
) -> None:
    _, client = api
    assert await refused_fields(client, owner_a, fields) == bad
    made = await event(client, owner_a)
    changed = await client.patch(f"/events/{made['id']}", json=fields, headers=owner_a)
    assert error_fields(assert_problem(changed, 422)) == bad


async def test_times_are_answered_in_utc_whatever_offset_they_were_sent_with(
    api: Api, owner_a: Headers
) -> None:
    _, client = api
    made = await event(
        client, owner_a, starts_at="2026-03-16T10:00:00+02:00", ends_at="2026-03-16T06:00:00-05:00"
    )
    assert (made["starts_at"], made["ends_at"]) == ("2026-03-16T08:00:00Z", "2026-03-16T11:00:00Z")
    changed = await client.patch(
        f"/events/{made['id']}", json={"ends_at": "2026-03-16T12:30:00+01:00"}, headers=owner_a
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["ends_at"] == "2026-03-16T11:30:00Z"
    read = await client.get(f"/events/{made['id']}", headers=owner_a)
    assert read.json() == changed.json()


async def test_the_calendar_content_type_names_its_charset_once(api: Api, owner_a: Headers) -> None:
    _, client = api
    feed = await client.get("/events.ics", headers=owner_a)
    assert feed.status_code == 200
    assert feed.headers["content-type"].replace(" ", "").lower() == "text/calendar;charset=utf-8"


@pytest.mark.parametrize(
    "window",
    [{"to": "2031-01-10T00:00:00Z"}, {"from": "0001-01-01T00:00:00Z", "to": "2031-01-10T00:00:00Z"}],
)
async def test_a_window_open_to_year_one_expands_series_without_overflowing(
    api: Api, owner_a: Headers, window: dict[str, str]
) -> None:
    # Found by the deep fuzz run: moving a series near a window that starts at the earliest
    # time there is went below year 1 (a 500).
    _, client = api
    weekly = await event(
        client,
        owner_a,
        starts_at="2031-01-06T10:00:00Z",
        ends_at="2031-01-06T11:00:00Z",
        recurrence="FREQ=WEEKLY",
    )
    assert weekly["id"] in await listed(client, owner_a, **window)


async def test_the_feed_zones_cover_events_past_2038(api: Api, owner_a: Headers) -> None:
    """A client reading the zone from the feed places a 2040 summer meeting at UTC+2."""
    _, client = api
    body = {
        "title": "Far",
        "time_zone": "Europe/Berlin",
        "starts_at": "2040-07-02T09:00:00+02:00",
        "ends_at": "2040-07-02T10:00:00+02:00",
    }
    assert (await client.post("/events", json=body, headers=owner_a)).status_code == 201
    calendar = icalendar.Calendar.from_ical((await client.get("/events.ics", headers=owner_a)).content)
    (berlin,) = [tz for tz in calendar.walk("VTIMEZONE") if str(tz["TZID"]) == "Europe/Berlin"]
    summers = [c["DTSTART"].dt.year for c in berlin.walk("DAYLIGHT")]
    for daylight in berlin.walk("DAYLIGHT"):
        dates = daylight.get("RDATE", [])
        for rdate in dates if isinstance(dates, list) else [dates]:
            summers += [period.dt.year for period in rdate.dts]
    assert max(summers) >= 2040


async def test_a_window_that_only_touches_an_event_does_not_hold_it(api: Api, owner_a: Headers) -> None:
    """Spans are half-open: a 10:00-11:00 meeting is in neither 09:00-10:00 nor 11:00-12:00."""
    _, client = api
    made = await event(client, owner_a, starts_at="2031-03-10T10:00:00Z", ends_at="2031-03-10T11:00:00Z")
    for window in (("09:00", "10:00"), ("11:00", "12:00"), ("10:59:59", "11:00")):
        bounds = {"from": f"2031-03-10T{window[0]}Z", "to": f"2031-03-10T{window[1]}Z"}
        inside = made["id"] in await listed(client, owner_a, **bounds)
        occurrences = await client.get("/events/occurrences", params=bounds, headers=owner_a)
        held = made["id"] in {o["event_id"] for o in occurrences.json()["items"]}
        assert (inside, held) == ((True, True) if window[0] == "10:59:59" else (False, False)), window
