"""Request bodies: the schema base, the size limit, the content type, and values
PostgreSQL cannot store."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler

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


_JSON = RequestEncodingType.JSON.value
# The body type each handler reads (None: it reads none), found once per handler.
_EXPECTED: dict[BaseRouteHandler, str | None] = {}


def _body_media_type(handler: BaseRouteHandler) -> str | None:
    parameter = handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return None
    media_type = getattr(parameter.kwarg_definition, "media_type", None) or RequestEncodingType.JSON
    return media_type.value if isinstance(media_type, RequestEncodingType) else str(media_type)


def _accepts(expected: str, declared: str | None) -> bool:
    if declared is None:
        # API.md §5: a request that declares no type may still be read as JSON.
        return expected == _JSON
    media_type = declared.partition(";")[0].strip().lower()
    if expected == _JSON:
        return media_type == "application/json" or media_type.endswith("+json")
    return media_type == expected


def content_type_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """415 for a body of another type than the one the route reads (an app-wide guard).

    Without it a JSON body sent to the upload route was answered 400 as broken
    multipart, and a form sent to a JSON route 400 as broken JSON.
    """
    try:
        expected = _EXPECTED[handler]
    except KeyError:
        expected = _EXPECTED[handler] = _body_media_type(handler)
    if expected is not None and not _accepts(expected, connection.headers.get("content-type")):
        raise problem(415, f"This route reads a body of type {expected}.")
