"""Request bodies: the schema base, the size limit, and values PostgreSQL cannot store."""

from __future__ import annotations

from typing import Any

import msgspec

from atrium.platform.web.errors import problem

JSON_BODY_LIMIT = 1024 * 1024


class Schema(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused (422)."""


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def refuse_nul_characters(values: dict[str, Any]) -> None:
    """PostgreSQL stores no NUL character in text or jsonb: refuse it, naming the field."""
    bad = [name for name, value in values.items() if _has_nul(value)]
    if bad:
        raise problem(
            422,
            "Text may not contain the NUL character.",
            errors=[{"field": name, "message": "contains a NUL character"} for name in bad],
        )
