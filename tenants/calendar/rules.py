"""What an event's body must hold beyond its fields' types: a known zone, an end after the
start, midnights for an all-day event, distinct attendees, a rule that yields the start.

A body rule (bodies.Schema): it judges what it is given and leaves alone what is missing,
so that it serves a whole event (the service, on a valid body or a merged change) and the
fields of a body that failed its types alike. Times are put in UTC and the recurrence in
its normal form as they are checked.
"""

from __future__ import annotations

import datetime
from typing import Any

from atrium.platform.web.bodies import listed_once
from atrium.tenants.calendar.recurrence import (
    EARLIEST,
    LATEST,
    RecurrenceError,
    Series,
    in_utc,
    normalize,
    rule_parts,
    zone,
)

Errors = list[dict[str, str]]
ATTENDEES_ONCE = listed_once("attendee_ids", "a user")
_TIMES = ("starts_at", "ends_at")


def event_rules(values: dict[str, Any]) -> Errors:
    errors: Errors = []
    time_zone = values.get("time_zone")
    if time_zone is not None:
        try:
            zone(time_zone)
        except RecurrenceError as refused:
            errors.append({"field": "time_zone", "message": str(refused)})
    # Kept and answered in UTC, whatever offset they were sent with (API.md §5); one too
    # near year 1 or 9999 to convert is out of range.
    message = f"a time from {EARLIEST.year} to {LATEST.year - 1}"
    times_valid = True
    for name in _TIMES:
        if values.get(name) is not None:
            values[name] = in_utc(values[name], earliest=name == "starts_at")
            if not EARLIEST <= values[name] < LATEST:
                errors.append({"field": name, "message": message})
                times_valid = False
    starts_at, ends_at = values.get("starts_at"), values.get("ends_at")
    if times_valid and starts_at is not None and ends_at is not None and ends_at <= starts_at:
        errors.append({"field": "ends_at", "message": "must be after starts_at"})
    timed = all(values.get(name) is not None for name in (*_TIMES, "time_zone", "all_day"))
    if timed and not errors and values["all_day"]:
        tz = zone(time_zone)
        for name in _TIMES:
            if values[name].astimezone(tz).time() != datetime.time(0):
                errors.append({"field": name, "message": f"a midnight in {time_zone} (all_day)"})
    # The rule is read against the times once they are valid; before, by itself, so that a
    # broken rule is named beside broken times.
    if values.get("recurrence") is not None:
        try:
            if timed and not errors:
                series = Series(values["starts_at"], values["ends_at"], time_zone, values["all_day"])
                values["recurrence"] = normalize(values["recurrence"], series)
            else:
                rule_parts(values["recurrence"])
        except RecurrenceError as refused:
            errors.append({"field": "recurrence", "message": str(refused)})
    return errors + ATTENDEES_ONCE(values)
