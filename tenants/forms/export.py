"""A form's responses as CSV (API.md §11), written one batch of rows at a time.

Rows arrive in batches from a server-side cursor and each batch is sent before the next
is fetched, so memory holds one batch whatever the number of responses. PostgreSQL hands
every cell over as text, answers taken out of the JSON by key: decoding each response's
whole JSON in Python cost three times the time of the rest of the export.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from atrium.platform.tenancy.naming import quote_ident
from atrium.tenants.forms.models import FormResponse

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FIXED_COLUMNS = ["id", "submitted_at", "respondent"]


def safe_cell(text: str | None) -> str:
    if not text:
        return ""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _answer_sql(index: int, kind: str) -> str:
    """One answer as text: JSON strings, numbers and booleans as they read (``->>``), a
    multiselect's options joined by ``; ``."""
    if kind == "multiselect":
        return f"array_to_string(ARRAY(SELECT jsonb_array_elements_text(r.answers -> %(k{index})s)), '; ')"
    return f"r.answers ->> %(k{index})s"


def export_query(fields: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The statement of the export's rows, oldest first by the (form_id, created_at) index,
    and its parameters but the form's ``id``. Keys are parameters, never SQL text."""
    answers = "".join(f", {_answer_sql(i, field['type'])}" for i, field in enumerate(fields))
    sql = (
        "SELECT r.id::text,"
        " to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),"
        f" u.email{answers}"
        f" FROM {quote_ident(FormResponse.__tablename__)} AS r"
        f" LEFT JOIN {quote_ident('users')} AS u ON u.id = r.owner_id"
        " WHERE r.form_id = %(id)s ORDER BY r.created_at, r.id"
    )
    return sql, {f"k{i}": field["key"] for i, field in enumerate(fields)}


async def csv_chunks(
    fields: Sequence[Mapping[str, Any]], batches: AsyncIterator[list[Sequence[str | None]]]
) -> AsyncIterator[bytes]:
    """The header row, then one chunk of CSV per batch of rows (every cell text or NULL)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(c) for c in [*FIXED_COLUMNS, *(field["key"] for field in fields)]])
    yield buffer.getvalue().encode()
    async for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([safe_cell(c) for c in row] for row in rows)
        yield buffer.getvalue().encode()
