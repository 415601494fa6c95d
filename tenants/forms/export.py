"""A form's responses as CSV (API.md §11), written one batch of rows at a time.

Rows arrive in batches from a server-side cursor and each batch is sent before the next
is fetched, so memory holds one batch whatever the number of responses. PostgreSQL hands
every cell over as finished text (answers taken out of the JSON by key, formulas
neutralised, NULL as empty) and Python's ``csv`` quotes whole batches: decoding each
response's JSON and visiting each cell in Python took most of the export's time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from atrium.platform.tenancy.naming import quote_ident
from atrium.tenants.forms.models import FormResponse

FIXED_COLUMNS = ["id", "submitted_at", "respondent"]


def _cell(expression: str) -> str:
    """``expression`` as a finished cell: NULL empty, and a leading ``=``, ``+``, ``-``,
    ``@``, tab or carriage return prefixed with ``'``, since spreadsheets run such a cell
    as a formula (CSV injection)."""
    return f"regexp_replace(coalesce({expression}, ''), '^([-=+@\\t\\r])', '''\\1')"


def _answer_sql(index: int, kind: str) -> str:
    """One answer as text: JSON strings, numbers and booleans as they read (``->>``), a
    multiselect's options joined by ``; ``."""
    if kind == "multiselect":
        return f"array_to_string(ARRAY(SELECT jsonb_array_elements_text(r.answers -> %(k{index})s)), '; ')"
    return f"r.answers ->> %(k{index})s"


def export_query(fields: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The statement of the export's rows, oldest first by the (form_id, created_at) index,
    and its parameters but the form's ``id``. Keys are parameters, never SQL text."""
    answers = "".join(f", {_cell(_answer_sql(i, field['type']))}" for i, field in enumerate(fields))
    sql = (
        "SELECT r.id::text,"
        " to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        f" {_cell('u.email')}{answers}"
        f" FROM {quote_ident(FormResponse.__tablename__)} AS r"
        f" LEFT JOIN {quote_ident('users')} AS u ON u.id = r.owner_id"
        " WHERE r.form_id = %(id)s ORDER BY r.created_at, r.id"
    )
    return sql, {f"k{i}": field["key"] for i, field in enumerate(fields)}


async def csv_chunks(
    fields: Sequence[Mapping[str, Any]], batches: AsyncIterator[list[Sequence[str]]]
) -> AsyncIterator[bytes]:
    """The header row (keys start with a letter: nothing to neutralise), then one chunk of
    CSV per batch of ``export_query``'s rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*FIXED_COLUMNS, *(field["key"] for field in fields)])
    yield buffer.getvalue().encode()
    async for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(rows)
        yield buffer.getvalue().encode()
