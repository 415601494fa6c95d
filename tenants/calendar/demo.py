"""Sample events, one of them recurring, for a demo tenant (platform/tenancy/demo.py)."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.base import utcnow
from atrium.tenants.calendar.models import Event
from atrium.tenants.calendar.recurrence import Series


def _row(
    demo: DemoTenant, title: str, start: datetime.datetime, hours: int, **fields: object
) -> dict[str, object]:
    end = start + datetime.timedelta(hours=hours)
    zone = fields.get("time_zone", "UTC")
    series = Series(start, end, str(zone), bool(fields.get("all_day", False)), fields.get("recurrence"))  # type: ignore[arg-type]
    # Every row the same keys: one multi-row INSERT.
    return {
        "description": None,
        "location": None,
        "recurrence": None,
        "attendee_ids": [],
        "all_day": False,
        "title": title,
        "starts_at": start,
        "ends_at": end,
        "owner_id": demo.owner_id,
        "series_ends_at": series.series_ends_at(),
        **fields,
    }


def seed(conn: Connection, demo: DemoTenant) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    today = utcnow().astimezone(berlin).date()
    monday = today - datetime.timedelta(days=today.weekday())
    standup = datetime.datetime.combine(monday, datetime.time(9, 0), tzinfo=berlin)
    launch = datetime.datetime.combine(
        today + datetime.timedelta(days=10), datetime.time(15, 0), tzinfo=berlin
    )
    people = demo.made.get("users", [])
    conn.execute(
        insert(Event),
        [
            _row(
                demo,
                "Team stand-up",
                standup,
                1,
                time_zone="Europe/Berlin",
                recurrence="FREQ=WEEKLY;BYDAY=MO,WE,FR",
                attendee_ids=[demo.owner_id, *people],
                location="Room 2 / video call",
                description="Fifteen minutes: yesterday, today, blockers.",
            ),
            _row(
                demo,
                "Website launch",
                launch,
                2,
                time_zone="Europe/Berlin",
                attendee_ids=[demo.owner_id],
                description="The relaunch goes live.",
            ),
        ],
    )
