"""A form's responses as CSV (API.md §11), written one batch of rows at a time.

Rows arrive in batches from a server-side cursor; each batch is written and sent while
the next is fetched, so memory holds two batches whatever the number of responses.
PostgreSQL hands every cell over as text (answers taken out of the JSON by key, formulas
neutralised) and Python's ``csv`` quotes whole batches: decoding each response's JSON and
visiting each cell in Python took most of the export's time. What is left is about even
between PostgreSQL (taking 50 answers out of each row) and ``csv`` (quoting them), which
is why each works while the other does.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar

from atrium.platform.tenancy.naming import quote_ident
from atrium.tenants.forms.models import FormResponse

FIXED_COLUMNS = ["id", "submitted_at", "respondent"]
# The first characters that make a spreadsheet run a cell as a formula (CSV injection):
# ``=``, ``+``, ``-``, ``@``, tab and carriage return, as code points for ``ascii()``.
FORMULA_STARTS = ", ".join(str(ord(c)) for c in "=+-@\t\r")

T = TypeVar("T")


def _answer_sql(index: int, kind: str) -> str:
    """One answer as text: JSON strings, numbers and booleans as they read (``->>``), a
    multiselect's options joined by ``; ``. An answer kept from an earlier version may
    hold a single value under a key that is a multiselect now: it reads as it is."""
    if kind != "multiselect":
        return f"r.answers ->> %(k{index})s"
    value = f"r.answers -> %(k{index})s"
    return (
        f"CASE jsonb_typeof({value}) WHEN 'array'"
        f" THEN array_to_string(ARRAY(SELECT jsonb_array_elements_text({value})), '; ')"
        f" ELSE {value} #>> '{{}}' END"
    )


def _cell(column: str) -> str:
    """``column`` as a finished cell, a leading formula character prefixed with ``'``.
    NULL stays NULL: ``csv`` writes it as an empty cell."""
    return f"CASE WHEN ascii({column}) IN ({FORMULA_STARTS}) THEN '''' || {column} ELSE {column} END"


def export_query(fields: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The statement of the export's rows, oldest first by the (form_id, created_at) index,
    and its parameters but the form's ``id``. Keys are parameters, never SQL text.

    The answers are taken out of the JSON in a subquery and guarded outside it: the guard
    names its cell twice, and on a column that costs nothing, where on the expression it
    would take the answer out of the JSON again. ``OFFSET 0`` keeps PostgreSQL from
    merging the two levels back into one.
    """
    answers = "".join(f", {_answer_sql(i, field['type'])} AS a{i}" for i, field in enumerate(fields))
    cells = "".join(f", {_cell(f'a{i}')}" for i in range(len(fields)))
    sql = (
        f"SELECT id, submitted_at, {_cell('respondent')}{cells} FROM ("
        "SELECT r.id::text AS id,"
        " to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS submitted_at,"
        f" u.email AS respondent{answers}"
        f" FROM {quote_ident(FormResponse.__tablename__)} AS r"
        f" LEFT JOIN {quote_ident('users')} AS u ON u.id = r.owner_id"
        " WHERE r.form_id = %(id)s ORDER BY r.created_at, r.id OFFSET 0"
        ") AS cells"
    )
    return sql, {f"k{i}": field["key"] for i, field in enumerate(fields)}


async def read_ahead(batches: AsyncIterator[T]) -> AsyncIterator[T]:
    """``batches``, the next one asked for before the current one is handed on: PostgreSQL
    reads it while Python writes the current one's CSV, where one after the other each
    waited for the other. Stopped early (a client gone), the pending read is cancelled,
    which ``ReadTransaction.stream`` answers by dropping its connection."""
    pending = asyncio.ensure_future(anext(batches, None))
    try:
        while (batch := await pending) is not None:
            pending = asyncio.ensure_future(anext(batches, None))
            # One turn of the loop: the read sends its FETCH before the CSV holds the loop.
            await asyncio.sleep(0)
            yield batch
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


async def csv_chunks(
    fields: Sequence[Mapping[str, Any]], batches: AsyncIterator[list[Sequence[str | None]]]
) -> AsyncIterator[bytes]:
    """The header row (keys start with a letter: nothing to neutralise), then one chunk of
    CSV per batch of ``export_query``'s rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*FIXED_COLUMNS, *(field["key"] for field in fields)])
    yield buffer.getvalue().encode()
    async for rows in read_ahead(batches):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(rows)
        yield buffer.getvalue().encode()
