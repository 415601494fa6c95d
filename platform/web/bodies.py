"""Request bodies: the schema base, the size limit, the content type, and values
PostgreSQL cannot store."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

import msgspec
from litestar.connection import Request
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler

from atrium.platform.web.errors import problem
from atrium.platform.web.validation import (
    NUL_MESSAGE,
    BodyRule,
    describe_pattern,
    has_nul,
    loose_type_problems,
)

JSON_BODY_LIMIT = 1024 * 1024
# How deeply a JSON body's arrays and objects may nest (the body itself is level 1).
MAX_JSON_DEPTH = 64


class Schema(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: unknown fields are refused (422).

    ``body_rules`` are the checks of one body that no field's type can say (an end after
    its start, distinct ids, a known time zone) and that need no database. The service runs
    them on a valid body, as part of its own checks; when the types fail, they run on the
    fields that passed (validation.field_errors), so that one 422 names both kinds.
    """

    body_rules: ClassVar[tuple[BodyRule, ...]] = ()


# A name or title: on one line, with no space at either end. Two names differing only
# there look the same in every list (and slipped past a case-insensitive unique name).
# Nor text-direction controls (U+202A-U+202E, U+2066-U+2069): they make a name display as
# another ("Trojan Source"), in every list that shows it.
_BIDI = r"\u202a-\u202e\u2066-\u2069"  # escapes, so that the document shows them
NAME_RULE = "one line, without spaces at either end or text-direction controls"
_NAME_PATTERN = describe_pattern(rf"^[^\s{_BIDI}]([^\n{_BIDI}]*[^\s{_BIDI}])?$", NAME_RULE)
_NAME = re.compile(_NAME_PATTERN)


def is_name(text: str) -> bool:
    """Whether ``text`` passes the rule of every name and title (``name_text``)."""
    return _NAME.search(text) is not None


def listed_once(field: str, what: str) -> BodyRule:
    """A body rule: the values of the list ``field`` each once ("lists a user twice")."""
    message = f"lists {what} twice"

    def rule(values: dict[str, Any]) -> list[dict[str, str]]:
        listed = values.get(field) or ()
        return [{"field": field, "message": message}] if len(set(listed)) != len(listed) else []

    return rule


# A message, post or comment: a reader gets nothing from one of spaces alone.
_WRITTEN_PATTERN = describe_pattern(r"\S", "must contain more than spaces")


def written_text(max_length: int, description: str | None = None) -> Any:
    """The type of a required text a person writes (a post, a comment, a message): 1 to
    ``max_length`` characters, not all of them spaces."""
    return Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=max_length, pattern=_WRITTEN_PATTERN, description=description),
    ]


def name_text(max_length: int = 200, description: str | None = None) -> Any:
    """The type of a name or title field of 1 to ``max_length`` characters."""
    return Annotated[
        str, msgspec.Meta(min_length=1, max_length=max_length, pattern=_NAME_PATTERN, description=description)
    ]


def refuse_nul_characters(values: dict[str, Any]) -> None:
    """PostgreSQL stores no NUL character in text or jsonb: refuse it, naming the field."""
    bad = [name for name, value in values.items() if has_nul(value)]
    if bad:
        raise problem(
            422,
            "Text may not contain the NUL character.",
            errors=[{"field": name, "message": NUL_MESSAGE} for name in bad],
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


async def check_body(request: Request[Any, Any, Any]) -> None:
    """415 for a body of another type than the route reads, and 400 for JSON nested deeper
    than ``MAX_JSON_DEPTH``, before anything decodes it (called before every handler).

    Without the first, a JSON body sent to the upload route was answered 400 as broken
    multipart, and a form sent to a JSON route 400 as broken JSON. Without the second,
    msgspec's decoder recursed until Python's limit (a 500 at about 1,000 levels).
    """
    handler = request.route_handler
    try:
        expected = _EXPECTED[handler]
    except KeyError:
        expected = _EXPECTED[handler] = _body_media_type(handler)
    if expected is None:
        if request.method in _WRITES:
            await _refuse_any_body(request)
        return
    if not _accepts(expected, request.headers.get("content-type")):
        raise problem(415, f"This route reads a body of type {expected}.")
    if expected == _JSON:
        body = await request.body()
        # Fewer brackets than the limit (strings' included) cannot nest deeper than it: the
        # walk is for the rare body that might (a 50-answer form response spent ~2 % of its
        # CPU in it).
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH:
            depth = json_depth(body)
            if depth > MAX_JSON_DEPTH:
                raise problem(
                    400, f"The JSON body is nested {depth} levels deep; the limit is {MAX_JSON_DEPTH}."
                )
        if errors := loose_type_problems(request, body):
            raise problem(422, "The request is not valid.", errors=errors)


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _refuse_any_body(request: Request[Any, Any, Any]) -> None:
    """A route that reads no body (an action with nothing to say, a restore, a logout)
    takes none: nothing or ``{}`` passes; a JSON object's fields are each named as unknown
    (API.md §5, 422), and any other body is 400. They were read by nobody and answered 200,
    so a client believed what it sent had been applied."""
    body = await request.body()
    if not body.strip():
        return
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise problem(400, "This route takes no body.") from None
    if not isinstance(value, dict):
        raise problem(400, "This route takes no body.")
    if value:
        message = "unknown field; this route takes no body"
        errors = [{"field": key, "message": message} for key in value]
        raise problem(422, "The request is not valid.", errors=errors)


# JSON strings (their brackets are text), and every byte that is not a bracket.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPENING = frozenset(b"[{")


def json_depth(body: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest, without decoding it."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in _OPENING:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest
