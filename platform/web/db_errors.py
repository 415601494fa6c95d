"""Database integrity and data errors, as the problems a client understands."""

from __future__ import annotations

import re
from typing import Any

import psycopg.errors

from atrium.platform.web.errors import problem
from atrium.platform.web.idempotency import key_in_use
from atrium.tenants.idempotency_keys import KEY_CONSTRAINT

# PostgreSQL names the offending column in the error detail: 'Key (owner_id)=(…) is not
# present in table "users"', 'Key (lower(email::text))=(…) already exists'. Only the
# column name is taken from it; the detail itself (with the value) is never shown.
_DETAIL_COLUMN = re.compile(r"^Key \((?:lower\()?([a-z_][a-z0-9_]*)")


def _offending_field(diag: Any) -> str:
    match = _DETAIL_COLUMN.match(getattr(diag, "message_detail", None) or "")
    return match.group(1) if match else ""


def integrity_problem(exc: Exception, deleting: bool = False, row: str = "row") -> Exception:
    """Map a database integrity or data error to the problem a client understands;
    ``exc`` itself when it is neither. ``row`` names what was written ("project")."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    while not isinstance(orig, psycopg.Error) and getattr(orig, "__cause__", None) is not None:
        orig = orig.__cause__
    diag = getattr(orig, "diag", None)
    field_name = _offending_field(diag)
    if isinstance(orig, psycopg.errors.UniqueViolation):
        if getattr(diag, "constraint_name", None) == KEY_CONSTRAINT:
            # Two requests with one key passed the lock between them (idempotency.py).
            return key_in_use()
        if not field_name:
            return problem(409, f"A {row} with this value already exists.", type_="conflict")
        return problem(
            409,
            f"A {row} with this {field_name} already exists.",
            type_="conflict",
            errors=[{"field": field_name, "message": f"another {row} has it"}],
        )
    if isinstance(orig, psycopg.errors.ForeignKeyViolation):
        if deleting or (diag and (diag.message_primary or "").startswith("update or delete")):
            return problem(409, "This row is still referenced by other rows.", type_="conflict")
        return problem(
            422,
            "A referenced row does not exist.",
            errors=[{"field": field_name, "message": "no such row in this tenant"}],
        )
    if isinstance(orig, psycopg.errors.StringDataRightTruncation):
        return problem(422, "A value is too long.", errors=[{"field": field_name, "message": "too long"}])
    if isinstance(orig, (psycopg.errors.IntegrityError, psycopg.errors.DataError)):
        return problem(
            422, "A value is not valid.", errors=[{"field": field_name, "message": "invalid value"}]
        )
    return exc
