"""RFC 5545 recurrence: validated, and expanded in the event's own time zone.

python-dateutil's ``rrule`` does the expansion. Its occurrences are aware datetimes in
the event's ``ZoneInfo``, so a weekly 09:00 Europe/Berlin event stays 09:00 local across
a daylight-saving change (the offset is the zone's on each date, never a fixed one).
"""

from __future__ import annotations

import datetime
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, available_timezones

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, rrulestr

UTC = datetime.UTC
# A far end for series without one (``series_ends_at``): a real timestamp, which Python
# can read back, where PostgreSQL's ``infinity`` could not be.
NEVER = datetime.datetime(9999, 12, 31, tzinfo=UTC)
# Events start and end within these years (422 otherwise), and series are expanded up to
# HORIZON: far enough for any calendar, near enough that no date arithmetic overflows and
# no expansion runs for long (daily for 400 years is about 150,000 dateutil steps).
EARLIEST = datetime.datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime.datetime(2200, 1, 1, tzinfo=UTC)
HORIZON = datetime.datetime(2300, 1, 1, tzinfo=UTC)
# Sub-daily rules are refused: an impossible one (``FREQ=HOURLY;BYMONTH=2;BYMONTHDAY=30``)
# would keep dateutil searching for minutes. Calendar apps offer daily and coarser.
FREQUENCIES = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})
MAX_COUNT = 5000
MAX_INTERVAL = 1000
MAX_RULE_LENGTH = 1000
# The Gregorian calendar repeats every 400 years to the weekday: a rule's occurrences
# relative to its start are the same 400 years later.
_CYCLE_YEARS = 400
_PART = re.compile(r"^[A-Z]+=[A-Z0-9,+\-]+$")
# Parsed rules kept per process, by (rule, start, zone): a listing parses the same series
# on every request. An rrule is not changed by iterating it (dateutil's cache is off).
PARSED_RULES_MAX = 4096
# Series' occurrences kept per window (``Series.in_window``): a few occurrences each, about
# 1 KB, so at most a few MB per process.
WINDOWS_KEPT = 4096
# How far before a window an expansion moved near it starts (``near``): more than any
# daylight-saving or zone offset change between the start and the window.
_NEAR_MARGIN = datetime.timedelta(days=2)


def in_utc(value: datetime.datetime, earliest: bool) -> datetime.datetime:
    """``value`` in UTC; a time too close to year 1 or 9999 to convert becomes the first or
    last representable one (``earliest``: the bound it was meant as)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.datetime.min if earliest else datetime.datetime.max).replace(tzinfo=UTC)


class RecurrenceError(ValueError):
    """Why a recurrence is refused (the message names the problem for the client)."""


# Found on the zone search path but not IANA names: the host's own zone under another name.
NOT_IANA = frozenset({"localtime", "posixrules"})


@cache
def time_zones() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_IANA


def zone(name: str) -> ZoneInfo:
    if name not in time_zones():
        raise RecurrenceError("not an IANA time zone name, e.g. Europe/Berlin")
    return ZoneInfo(name)


@dataclass(frozen=True)
class Series:
    """An event's times: its first occurrence, in its zone, and its rule, if any."""

    starts_at: datetime.datetime
    ends_at: datetime.datetime
    time_zone: str
    all_day: bool = False
    recurrence: str | None = None

    @property
    def local_start(self) -> datetime.datetime:
        return self.starts_at.astimezone(zone(self.time_zone))

    @property
    def wall_duration(self) -> datetime.timedelta:
        """The length on the wall clock (a 09:00-10:00 meeting stays one, across DST)."""
        tz = zone(self.time_zone)
        return self.ends_at.astimezone(tz).replace(tzinfo=None) - self.starts_at.astimezone(tz).replace(
            tzinfo=None
        )

    def rule(self) -> rrule | None:
        if self.recurrence is None:
            return None
        return _parse_kept(self.recurrence, self.starts_at, self.time_zone)

    def occurrences(
        self, window_from: datetime.datetime, window_to: datetime.datetime
    ) -> Iterator[tuple[datetime.datetime, datetime.datetime]]:
        """(start, end) in UTC of every occurrence that ends after ``window_from`` and starts
        before ``window_to`` (spans meeting at an instant do not overlap), in start order."""
        rule = self.rule()
        window_to = min(window_to, HORIZON)
        if rule is None:
            if self.ends_at > window_from and self.starts_at < window_to:
                yield self.starts_at.astimezone(UTC), self.ends_at.astimezone(UTC)
            return
        duration = self.wall_duration
        for start in near(_expansion_rule(rule), window_from, duration):
            start_utc = start.astimezone(UTC)
            if start_utc >= window_to:
                return
            end = _after(start, duration)
            if end > window_from:
                yield start_utc, end

    def in_window(
        self, window_from: datetime.datetime, window_to: datetime.datetime, tz: datetime.tzinfo = UTC
    ) -> tuple[tuple[datetime.datetime, datetime.datetime], ...]:
        """``occurrences`` of a window of at most a year or so (the occurrences route), given
        in ``tz`` (a UTC zone: the one the caller's other times are in), kept per process:
        calendar apps ask for the same weeks and months again and again, and the key (the
        series' times, rule and zone, and the window) changes with any edit."""
        return _in_window(self, window_from, window_to, tz)

    def series_ends_at(self) -> datetime.datetime:
        """When the last occurrence ends (``NEVER`` without an end): the span the list's
        ``from``/``to`` prefilter compares, refined by expanding (services.py)."""
        rule = self.rule()
        if rule is None:
            return self.ends_at.astimezone(UTC)
        if rule._count is not None:
            last = None
            for last in rule:  # noqa: B007 - at most MAX_COUNT, each found in bounded time (validate)
                pass
            return _after(last, self.wall_duration).astimezone(UTC) if last else self.ends_at
        if rule._until is not None:
            return max(self.ends_at, _after(rule._until.astimezone(zone(self.time_zone)), self.wall_duration))
        return NEVER


def near(rule: rrule, window_from: datetime.datetime, duration: datetime.timedelta) -> rrule:
    """``rule`` with its start moved forward by whole periods to shortly before the first
    occurrence that can end at or after ``window_from``, where that leaves its occurrences
    from there on the same; ``rule`` itself otherwise (``COUNT`` counts from the first start).

    A series started years ago is then expanded from near the window, not from its start.
    The start keeps its wall-clock time and everything dateutil derives from it (weekday,
    day of the month, month), and the periods stay aligned: days and weeks move by whole
    intervals, months and years by whole years that are whole intervals. So each period
    from the new start holds the occurrences it held before (``BYSETPOS`` included);
    those dropped start before the new start, and so end before ``window_from``.
    """
    if rule._count is not None:
        return rule
    start = rule._dtstart
    tz = start.tzinfo
    wall_start = start.replace(tzinfo=None)
    try:
        latest = window_from.astimezone(tz).replace(tzinfo=None) - duration - _NEAR_MARGIN
    except OverflowError:
        # A window open to the earliest time there is (a list's ``to`` alone): nothing
        # before it to skip, and no date before year 1 to compute.
        return rule
    if latest <= wall_start:
        return rule
    if rule._freq in (DAILY, WEEKLY):
        period = datetime.timedelta(days=rule._interval * (7 if rule._freq == WEEKLY else 1))
        moved = wall_start + (latest - wall_start) // period * period
    elif rule._freq in (MONTHLY, YEARLY):
        months = rule._interval * (12 if rule._freq == YEARLY else 1)
        years = math.lcm(months, 12) // 12
        periods = (latest.year - 1 - wall_start.year) // years
        if periods <= 0:
            return rule
        try:
            moved = wall_start.replace(year=wall_start.year + periods * years)
        except ValueError:  # 29 February into a common year: expanded from its start
            return rule
    else:
        return rule
    if moved <= wall_start:
        return rule
    return _moved(rule, moved)


@lru_cache(maxsize=WINDOWS_KEPT)
def _in_window(
    series: Series, window_from: datetime.datetime, window_to: datetime.datetime, tz: datetime.tzinfo
) -> tuple[tuple[datetime.datetime, datetime.datetime], ...]:
    found = series.occurrences(window_from, window_to)
    return tuple((start.astimezone(tz), end.astimezone(tz)) for start, end in found)


@lru_cache(maxsize=PARSED_RULES_MAX)
def _moved(rule: rrule, wall_start: datetime.datetime) -> rrule:
    # Kept by the kept rule (``_expansion_rule``) and the new start, which is the same for
    # every window that begins in the same period: windows are asked for again and again.
    return rule.replace(dtstart=wall_start.replace(tzinfo=rule._dtstart.tzinfo))


@lru_cache(maxsize=PARSED_RULES_MAX)
def _expansion_rule(rule: rrule) -> rrule:
    """``rule`` (a kept one, ``Series.rule``) with ``COUNT`` turned into the ``UNTIL`` of its
    last occurrence: the same occurrences, in a form ``near`` can move forward."""
    if rule._count is None:
        return rule
    last = None
    for last in rule:  # noqa: B007 - at most MAX_COUNT, each found in bounded time (validate)
        pass
    if last is None:
        return rule
    return rule.replace(count=None, until=last.astimezone(UTC))


def _after(start: datetime.datetime, duration: datetime.timedelta) -> datetime.datetime:
    """``start`` plus a wall-clock ``duration``, in the start's zone."""
    tz = start.tzinfo
    return (start.replace(tzinfo=None) + duration).replace(tzinfo=tz).astimezone(UTC)


def rule_parts(value: str) -> dict[str, str]:
    """The rule's parts, upper case; ``RecurrenceError`` for what is wrong with the rule
    by itself, whatever the event's times (which ``normalize`` reads it against)."""
    text = value.strip().upper()
    if not text or len(text) > MAX_RULE_LENGTH:
        raise RecurrenceError(f"an RRULE value of 1-{MAX_RULE_LENGTH} characters, e.g. FREQ=WEEKLY;BYDAY=MO")
    parts: dict[str, str] = {}
    for part in text.split(";"):
        if not _PART.fullmatch(part):
            raise RecurrenceError(f"{part!r} is not a NAME=VALUE part of an RRULE")
        name, _, part_value = part.partition("=")
        if name in parts:
            raise RecurrenceError(f"{name} is given twice")
        parts[name] = part_value
    if "COUNT" in parts and "UNTIL" in parts:
        raise RecurrenceError("COUNT and UNTIL cannot both be given (RFC 5545)")
    if parts.get("FREQ") not in FREQUENCIES:
        raise RecurrenceError(f"FREQ must be one of {', '.join(sorted(FREQUENCIES))}")
    _check_parts(parts)
    for name, limit in (("COUNT", MAX_COUNT), ("INTERVAL", MAX_INTERVAL)):
        if name in parts and not (parts[name].isdigit() and 1 <= int(parts[name]) <= limit):
            raise RecurrenceError(f"{name} must be a whole number from 1 to {limit}")
    return parts


def normalize(value: str, series: Series) -> str:
    """The rule as stored: upper case, ``UNTIL`` in UTC (a date for all-day events, as
    RFC 5545 wants it beside a date ``DTSTART``). 422 (``RecurrenceError``) when it is not
    a rule this API expands: unparsable, ``COUNT`` with ``UNTIL``, sub-daily, without any
    occurrence in the ten years after its start."""
    parts = rule_parts(value)
    if "UNTIL" in parts:
        parts["UNTIL"] = _until(parts["UNTIL"], series)
    text = ";".join(f"{name}={part_value}" for name, part_value in parts.items())
    rule = _parse(text, series.local_start)
    if not _occurs_within_ten_years(rule, series.local_start):
        raise RecurrenceError("the rule has no occurrence in the ten years after starts_at")
    # RFC 5545 counts DTSTART as the first occurrence whether or not the rule matches it;
    # dateutil (and so /events/occurrences) does not. A start the rule does not yield would
    # be shown by calendar apps reading the feed and nowhere in this API: refused instead.
    # Found within ten years of the start (checked above), so the search is bounded.
    if next(iter(rule), None) != series.local_start:
        raise RecurrenceError(
            "starts_at must be the series' first occurrence, and this rule does not yield it"
        )
    return text


# The parts of RFC 5545's RECUR this API expands. The time of day is the start's: BYHOUR,
# BYMINUTE and BYSECOND (with several values, a sub-daily series under a DAILY name) and
# dateutil's own BYEASTER are refused.
_PARTS = frozenset(
    {
        "FREQ",
        "UNTIL",
        "COUNT",
        "INTERVAL",
        "BYDAY",
        "BYMONTHDAY",
        "BYYEARDAY",
        "BYWEEKNO",
        "BYMONTH",
        "BYSETPOS",
        "WKST",
    }
)
# RFC 5545 §3.3.10: the parts each FREQ may carry, and the range of each numeric list.
_NOT_WITH = {
    "BYWEEKNO": {"DAILY", "WEEKLY", "MONTHLY"},
    "BYYEARDAY": {"DAILY", "WEEKLY", "MONTHLY"},
    "BYMONTHDAY": {"WEEKLY"},
}
_RANGES = {"BYMONTHDAY": 31, "BYYEARDAY": 366, "BYWEEKNO": 53, "BYSETPOS": 366, "BYMONTH": 12}
_WEEKDAY = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")


def _check_parts(parts: dict[str, str]) -> None:
    freq = parts["FREQ"]
    for name in parts:
        if name in {"BYHOUR", "BYMINUTE", "BYSECOND"}:
            raise RecurrenceError(f"{name} is not supported: the time of day is the start's")
        if name not in _PARTS:
            raise RecurrenceError(f"{name} is not an RFC 5545 RRULE part")
        if freq in _NOT_WITH.get(name, ()):
            raise RecurrenceError(f"{name} cannot be used with FREQ={freq} (RFC 5545)")
    for name, largest in _RANGES.items():
        for value in filter(None, parts.get(name, "").split(",")):
            number = value.lstrip("+-")
            low = 1 if name == "BYMONTH" else -largest
            if not number.isdigit() or not low <= int(value) <= largest or int(value) == 0:
                raise RecurrenceError(f"{name} values must be whole numbers from {low} to {largest}, not 0")
    for value in filter(None, parts.get("BYDAY", "").split(",")):
        matched = _WEEKDAY.fullmatch(value)
        if matched is None:
            raise RecurrenceError(f"BYDAY {value!r} is not a weekday (MO, +1MO, -1FR, ...)")
        if matched.group(1) and (freq not in {"MONTHLY", "YEARLY"} or "BYWEEKNO" in parts):
            raise RecurrenceError("a numbered BYDAY (+1MO) needs FREQ=MONTHLY or YEARLY, without BYWEEKNO")
    if "BYSETPOS" in parts and not any(name.startswith("BY") and name != "BYSETPOS" for name in parts):
        raise RecurrenceError("BYSETPOS needs another BY part to choose among (RFC 5545)")


def _until(raw: str, series: Series) -> str:
    tz = zone(series.time_zone)
    try:
        if len(raw) == 8:
            # A date: through the end of that day.
            day = datetime.datetime.strptime(raw, "%Y%m%d")
            local = day if series.all_day else day + datetime.timedelta(days=1, seconds=-1)
        elif raw.endswith("Z"):
            local = datetime.datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone(tz)
            local = local.replace(tzinfo=None)
        else:
            local = datetime.datetime.strptime(raw, "%Y%m%dT%H%M%S")
    except ValueError:
        raise RecurrenceError(
            "UNTIL must be a date (YYYYMMDD) or a time (YYYYMMDDTHHMMSS, Z for UTC)"
        ) from None
    # Series are expanded up to HORIZON; an UNTIL past it (99991231 for "no end") would
    # also overflow the date arithmetic below.
    if local.year >= HORIZON.year:
        raise RecurrenceError(f"UNTIL must be before {HORIZON.year}; leave it out for a series without end")
    if local < series.local_start.replace(tzinfo=None):
        raise RecurrenceError("UNTIL is before starts_at: the series would have no occurrence")
    if series.all_day:
        return local.strftime("%Y%m%d")
    return local.replace(tzinfo=tz).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@lru_cache(maxsize=PARSED_RULES_MAX)
def _parse_kept(text: str, starts_at: datetime.datetime, time_zone: str) -> rrule:
    # Keyed by the zone's name too: aware datetimes of the same instant are equal in any zone.
    return _parse(text, starts_at.astimezone(zone(time_zone)))


def _parse(text: str, local_start: datetime.datetime) -> rrule:
    until = text.partition("UNTIL=")[2].partition(";")[0]
    if until and not until.endswith("Z"):
        # A date UNTIL (all-day events): the end of that day in the event's zone, in UTC,
        # as dateutil wants it beside an aware start.
        text = _until_as_utc(text, local_start)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rule = rrulestr(text, dtstart=local_start)
    except (ValueError, TypeError, OverflowError, IndexError, Warning) as exc:
        raise RecurrenceError(f"not a valid RRULE: {exc}") from None
    if not isinstance(rule, rrule):
        raise RecurrenceError("one RRULE value, without DTSTART or other properties")
    return rule


def _until_as_utc(text: str, local_start: datetime.datetime) -> str:
    parts = dict(part.partition("=")[::2] for part in text.split(";"))
    raw = parts["UNTIL"]
    try:
        day = datetime.datetime.strptime(raw[:8], "%Y%m%d")
    except ValueError:
        raise RecurrenceError("UNTIL must be a date (YYYYMMDD) or a UTC time (YYYYMMDDTHHMMSSZ)") from None
    end_of_day = (day + datetime.timedelta(days=1) - datetime.timedelta(seconds=1)).replace(
        tzinfo=local_start.tzinfo
    )
    parts["UNTIL"] = end_of_day.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return ";".join(f"{k}={v}" for k, v in parts.items())


def _occurs_within_ten_years(rule: rrule, local_start: datetime.datetime) -> bool:
    """Whether the rule yields within ten years of its start, in bounded time.

    dateutil checks ``UNTIL`` only when a date matches, so a rule no date matches runs to
    the year 9999. The check runs the rule from a start shifted by whole 400-year cycles
    (the same weekdays on the same dates) to just before that year: at most about 400
    years of periods, whatever the rule.
    """
    cycles = (datetime.MAXYEAR - 11 - local_start.year) // _CYCLE_YEARS
    # Leap years stay leap years 400 years on: 29 February shifts too.
    shifted = local_start.replace(year=local_start.year + cycles * _CYCLE_YEARS)
    limit = shifted + datetime.timedelta(days=3653)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for occurrence in rule.replace(dtstart=shifted, until=None, count=None):
                return occurrence <= limit
    except (ValueError, OverflowError, IndexError):
        # dateutil indexes past its month tables for an nth weekday no month has (+8MO).
        return False
    return False
