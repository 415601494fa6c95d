"""Every bad field of a request body named in one answer.

msgspec stops at the first error it meets, so a body missing three fields was answered
with one. When a body fails, it is checked again here field by field (on the failure
path only: a valid body costs nothing extra), so the 422 names every unknown, missing
and invalid field at once.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

# msgspec's location suffix: "Expected `int`, got `str` - at `$.items[0].x`".
_LOCATION = re.compile(r" - at `\$([^`]*)`$")


# msgspec names a failed pattern by the regex itself, which tells a client nothing.
_PATTERN = re.compile(r"^Expected `str` matching regex (.+?)( - at `[^`]*`)?$")
_PATTERN_MESSAGES: dict[str, str] = {}


def describe_pattern(pattern: str, message: str) -> str:
    """Say ``message`` instead of the regex when a field fails ``pattern``; returns the pattern."""
    _PATTERN_MESSAGES[repr(pattern)] = message
    return pattern


def readable(message: str) -> str:
    """msgspec's message, with a known pattern's regex replaced by what it means."""
    matched = _PATTERN.match(message)
    if matched is None:
        return message
    meaning = _PATTERN_MESSAGES.get(matched.group(1), "does not have the expected format")
    return meaning + (matched.group(2) or "")


def decoded_json_body(request: Request[Any, Any, Any]) -> Any:
    """The body Litestar decoded for this request, or ``Empty`` if it decoded none.

    Litestar keeps it in its connection state, which it calls internal; this is the one
    place that reads it, and tests/test_validation.py fails if it moves.
    """
    return ScopeState.from_scope(request.scope).json


def body_schema(request: Request[Any, Any, Any]) -> type[msgspec.Struct] | None:
    """The msgspec struct the route's JSON body (``data``) is decoded into, if it is one."""
    parameter = request.route_handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return None
    if (
        getattr(parameter.kwarg_definition, "media_type", RequestEncodingType.JSON)
        != RequestEncodingType.JSON
    ):
        return None
    annotation = parameter.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct) else None


def field_errors(schema: type[msgspec.Struct], value: dict[str, Any]) -> list[dict[str, str]]:
    """Every field of ``value`` that is unknown, missing or invalid for ``schema``.

    Each field is converted as Litestar converts a body (``strict=False``). Empty when
    every field is valid on its own (a rule across fields failed instead).
    """
    fields = {f.encode_name: f for f in msgspec.structs.fields(schema)}
    errors = [{"field": key, "message": "unknown field"} for key in value if key not in fields]
    for name, info in fields.items():
        if name not in value:
            if info.required:
                errors.append({"field": name, "message": "required"})
            continue
        try:
            msgspec.convert(value[name], info.type, strict=False)
        except msgspec.ValidationError as exc:
            message = str(exc)
            location = _LOCATION.search(message)
            suffix = location.group(1) if location else ""
            errors.append({"field": name + suffix, "message": readable(_LOCATION.sub("", message))})
    return errors


def body_problems(request: Request[Any, Any, Any]) -> list[dict[str, str]] | None:
    """Every bad field of the request's JSON body; ``None`` when the body is empty or not
    an object (a 400, not a 422) and ``[]`` when there is nothing more to say than Litestar
    did (the route's body is not a struct)."""
    schema = body_schema(request)
    if schema is None:
        return []
    value = decoded_json_body(request)
    if value is Empty or not isinstance(value, dict):
        return None
    return field_errors(schema, value)
