"""Optimistic concurrency (API.md §5): an ``ETag`` on every single-row response, ``If-Match``
on ``PATCH`` and ``DELETE``.

The validator is strong and derived from the row's id and ``updated_at``, so no version
column (and no tenant migration) is needed, and ``GET`` by id computes it from the row it
fetched anyway, without a statement more. ``updated_at`` has microsecond precision and moves
on every write: ``CrudService.update`` moves it at least one microsecond past the value it
replaces, and the other write paths set it in SQL (``UserService.delete_user``). The id is
part of the tag because rows written in one transaction may share an ``updated_at``.

Handlers that send the tag, or check ``If-Match``, say so with the route options below;
``platform/web/openapi.py`` documents the header, the parameter and the 412 from them.
"""

from __future__ import annotations

import datetime
import re
import uuid
from hashlib import blake2b
from typing import Any

from litestar.types import Scope
from sqlalchemy import ColumnElement, func, literal_column

from atrium.platform.web.errors import problem

# Route option: the handler's success response carries the row's ``ETag``.
SENDS_ETAG = "sends_etag"
# Route option: the handler honours ``If-Match`` (412 when it no longer matches).
CHECKS_IF_MATCH = "checks_if_match"

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)
# RFC 9110 §8.8.3 entity-tag; a malformed member simply matches nothing.
_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


def entity_tag(row_id: uuid.UUID, updated_at: datetime.datetime) -> str:
    """The strong ETag of a row's current version, quoted as the header carries it."""
    # Integer microseconds, not ``timestamp()``: a float would round some of them together.
    version = (updated_at - _EPOCH) // _MICROSECOND
    digest = blake2b(row_id.bytes + version.to_bytes(8, "big", signed=True), digest_size=8)
    return f'"{digest.hexdigest()}"'


def row_tag(item: Any) -> str:
    """The ETag of an ORM row (anything with ``id`` and ``updated_at``)."""
    return entity_tag(item.id, item.updated_at)


def next_updated_at(previous: datetime.datetime) -> datetime.datetime:
    """``updated_at`` for a write over a row stamped ``previous``: now, and always later."""
    return max(datetime.datetime.now(datetime.UTC), previous + _MICROSECOND)


def next_updated_at_sql(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``next_updated_at`` for writes in SQL (``UPDATE … SET updated_at = <this>``).

    ``clock_timestamp()``, not ``now()``: a transaction that waited on a row lock started
    before the write it waited for.
    """
    return func.greatest(func.clock_timestamp(), column + literal_column("interval '1 microsecond'"))


def if_match_allows(if_match: str | None, current: str) -> bool:
    """Whether a write may proceed on the row whose ETag is ``current`` (RFC 9110 §13.1.1).

    No header: yes (last write wins). ``*``: any existing row. Otherwise any listed tag
    equal to ``current`` by strong comparison, so weak tags (``W/"…"``) never match.
    """
    if if_match is None:
        return True
    if if_match.strip() == "*":
        return True
    return any(not weak and f'"{opaque}"' == current for weak, opaque in _ENTITY_TAG.findall(if_match))


def request_header(scope: Scope, name: bytes) -> str | None:
    """The request's header ``name`` (lower case), several lines joined by commas.

    Read from the ASGI scope: the GET by id handler takes no ``Request`` (see resources.py).
    """
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ", ".join(values) if values else None


def check_if_match(if_match: str | None, current: str) -> None:
    """412 unless ``if_match`` allows a write over the row whose ETag is ``current``
    (``if_match_allows``); the 412 says so when the only tag that would have matched was
    sent weak (``W/``), which strong comparison never matches."""
    if if_match_allows(if_match, current):
        return
    tags = _ENTITY_TAG.findall(if_match or "")
    if any(weak and f'"{opaque}"' == current for weak, opaque in tags):
        raise problem(
            412,
            "If-Match compares tags strongly, so a weak tag (W/...) never matches; the row "
            "is unchanged. Send its ETag as the server sent it.",
        )
    raise problem(
        412,
        "The row has changed since the ETag sent in If-Match; it is unchanged. "
        "Read it again and retry with its current ETag.",
    )
