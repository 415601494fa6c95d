"""A form's responses as CSV (API.md §11), written one batch of rows at a time.

Rows arrive in batches from a server-side cursor and each batch is sent before the next
is fetched, so memory holds one batch whatever the number of responses.
"""

from __future__ import annotations

import csv
import datetime
import io
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FIXED_COLUMNS = ["id", "submitted_at", "respondent"]


def safe_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def cell(value: Any) -> str:
    """One answer as spreadsheet text: lists (multiselect) joined by ``; ``, booleans as
    ``true``/``false``, a missing answer empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return str(value)


def csv_row(keys: Sequence[str], row: Sequence[Any]) -> list[str]:
    """One response (id, created_at, respondent's email, answers) as the row's cells."""
    response_id, created_at, email, answers = row
    cells = [str(response_id), _timestamp(created_at), email or ""]
    cells.extend(cell(answers.get(key)) for key in keys)
    return [safe_cell(c) for c in cells]


async def csv_chunks(
    fields: Sequence[Mapping[str, Any]], batches: AsyncIterator[list[Any]]
) -> AsyncIterator[bytes]:
    """The header row, then one chunk of CSV per batch of rows."""
    keys = [field["key"] for field in fields]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(c) for c in [*FIXED_COLUMNS, *keys]])
    yield buffer.getvalue().encode()
    async for rows in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(csv_row(keys, row) for row in rows)
        yield buffer.getvalue().encode()
