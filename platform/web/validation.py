"""Every bad field of a request body named in one answer.

msgspec stops at the first error it meets, so a body missing three fields was answered
with one. When a body fails, it is checked again here field by field (on the failure
path only: a valid body costs nothing extra), so the 422 names every unknown, missing
and invalid field at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
from litestar import Request, Response
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

# msgspec's location suffix: "Expected `int`, got `str` - at `$.items[0].x`".
_LOCATION = re.compile(r" - at `\$([^`]*)`$")


# msgspec names a failed pattern by the regex itself, which tells a client nothing.
_PATTERN = re.compile(r"^Expected `str` matching regex (.+?)( - at `[^`]*`)?$")
_PATTERN_MESSAGES: dict[str, str] = {}


def anchored(pattern: str) -> str:
    r"""``pattern`` with its closing ``$`` matching only at the very end of the value.

    msgspec checks patterns with ``re.search``, and Python's ``$`` also matches before a
    final newline: ``"USD\n"`` passed ``^[A-Z]{3}$``, and an email could be stored with a
    newline after it. ``(?!\n)$`` reads the same in Python and in the ECMA-262 regexes of
    the OpenAPI document (where ``\Z`` would mean a letter Z).
    """
    end = r"(?!\n)$"
    if not pattern.endswith("$") or pattern.endswith(end):
        return pattern
    return pattern[:-1] + end


def describe_pattern(pattern: str, message: str) -> str:
    """``anchored(pattern)``, with ``message`` said instead of the regex when a field fails it."""
    pattern = anchored(pattern)
    _PATTERN_MESSAGES[repr(pattern)] = message
    return pattern


# Litestar's decoding hook names a Python class where a multipart field is not what the
# route reads: a field given twice arrives as a list, a part without a filename as text.
_UNSUPPORTED = re.compile(r"Unsupported type: <class '(\w+)'>")
_UNSUPPORTED_MEANING = {
    "list": "given more than once; send it once",
    "str": "not a file: send it as a file part, with a filename",
}


# msgspec's words for JSON's types, and for its usual refusals, as a client reads them.
_JSON_TYPES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
}
_UNITS = {"str": "characters", "array": "items", "object": "keys"}
_BOUNDS = {">=": "at least", "<=": "at most", ">": "more than", "<": "less than"}
_LENGTH = re.compile(r"^Expected `(str|array|object)` of length (>=|<=) (\d+)$")
_NUMBER = re.compile(r"^Expected `(?:int|float|number)` (>=|<=|>|<) (\S+)$")
_TYPE = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`$")
_INVALID = {
    "Invalid UUID": "not a valid UUID",
    "Invalid RFC3339 encoded datetime": "not an RFC 3339 date-time, e.g. 2026-03-16T08:00:00Z",
    "Invalid RFC3339 encoded date": "not a date, e.g. 2026-03-16",
}


def _json_type(name: str) -> str:
    return " or ".join(
        _JSON_TYPES.get(part, f"a{'n' if part[:1] in 'aeiou' else ''} {part}") for part in name.split(" | ")
    )


def _plain_words(message: str) -> str:
    """msgspec's standard refusals (lengths, bounds, types) in the words of the rest."""
    if matched := _LENGTH.match(message):
        kind, bound, count = matched.groups()
        if (kind, bound, count) == ("str", ">=", "1"):
            return "must not be empty"
        unit = _UNITS[kind] if count != "1" else _UNITS[kind][:-1]
        return f"{_BOUNDS[bound]} {count} {unit}"
    if matched := _NUMBER.match(message):
        return f"{_BOUNDS[matched.group(1)]} {matched.group(2)}"
    if matched := _TYPE.match(message):
        return f"must be {_json_type(matched.group(1))}, not {_json_type(matched.group(2))}"
    return _INVALID.get(message, message)


def readable(message: str) -> str:
    """msgspec's message, with a known pattern's regex replaced by what it means, no
    Python class named, and its standard refusals in plain words."""
    unsupported = _UNSUPPORTED.search(message)
    if unsupported is not None:
        return _UNSUPPORTED_MEANING.get(unsupported.group(1), "not of the expected type")
    matched = _PATTERN.match(message)
    if matched is None:
        location = _LOCATION.search(message)
        core = _LOCATION.sub("", message)
        return _plain_words(core) + (location.group(0) if location else "")
    meaning = _PATTERN_MESSAGES.get(matched.group(1), "does not have the expected format")
    return meaning + (matched.group(2) or "")


def decoded_json_body(request: Request[Any, Any, Any]) -> Any:
    """The body Litestar decoded for this request, or ``Empty`` if it decoded none.

    Litestar keeps it in its connection state, which it calls internal; this is the one
    place that reads it, and tests/test_validation.py fails if it moves.
    """
    return ScopeState.from_scope(request.scope).json


def body_schema(request: Request[Any, Any, Any]) -> type[msgspec.Struct] | None:
    """The msgspec struct the route's JSON body (``data``) is decoded into, if it is one;
    found once per handler (every JSON request asks, ``loose_type_problems``)."""
    handler = request.route_handler
    try:
        return _BODY_SCHEMAS[handler]
    except KeyError:
        schema = _BODY_SCHEMAS[handler] = _body_schema(handler)
        return schema


_BODY_SCHEMAS: dict[BaseRouteHandler, type[msgspec.Struct] | None] = {}


def _body_schema(handler: BaseRouteHandler) -> type[msgspec.Struct] | None:
    parameter = handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return None
    if (
        getattr(parameter.kwarg_definition, "media_type", RequestEncodingType.JSON)
        != RequestEncodingType.JSON
    ):
        return None
    annotation = parameter.annotation
    if get_origin(annotation) in (Union, UnionType):  # a body that may be left out (``X | None``)
        annotation = next((a for a in get_args(annotation) if a is not type(None)), None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct) else None


# ``msgspec.Meta(extra={MAX_BYTES: n})`` on a string: at most ``n`` bytes in UTF-8 (msgspec
# counts characters; bcrypt reads 72 bytes of a password).
MAX_BYTES = "max_bytes"
NUL_MESSAGE = "contains a NUL character"


def has_nul(value: Any) -> bool:
    """Whether a NUL character is anywhere in ``value`` (PostgreSQL stores none in text or jsonb)."""
    # An explicit stack, not recursion: bodies are at most MAX_JSON_DEPTH deep when they
    # get here, but no client input may ever reach Python's recursion limit.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _max_bytes(annotation: Any) -> int | None:
    """The ``MAX_BYTES`` of a string type, also within a union (``Password | Unset``)."""
    _, metas = plain_type(annotation)
    return next((m.extra[MAX_BYTES] for m in metas if m.extra and MAX_BYTES in m.extra), None)


def _byte_limit(schema: type[msgspec.Struct]) -> int | None:
    """The smallest ``MAX_BYTES`` of ``schema``'s fields, if any has one."""
    try:
        return _BYTE_LIMITS[schema]
    except KeyError:
        limits = [limit for f in msgspec.structs.fields(schema) if (limit := _max_bytes(f.type))]
        limit = _BYTE_LIMITS[schema] = min(limits, default=None)
        return limit


_BYTE_LIMITS: dict[type[msgspec.Struct], int | None] = {}


def _nul_paths(value: Any, path: str) -> list[str]:
    """Where NUL characters are in ``value``: ``answers.name``, ``tags[2]`` (a key with one
    names the object holding it)."""
    found = []
    pending = [(value, path)]  # a stack, not recursion: see ``has_nul``
    while pending:
        item, at = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                found.append(at)
        elif isinstance(item, dict):
            pending.extend((v, f"{at}.{k}") for k, v in item.items())
            if any(isinstance(k, str) and "\x00" in k for k in item):
                found.append(at)  # not the key itself in the answer's field name
        elif isinstance(item, list):
            pending.extend((v, f"{at}[{n}]") for n, v in enumerate(item))
    return sorted(set(found))


def _beyond_type(annotation: Any, value: Any, path: str) -> list[dict[str, str]]:
    """What is wrong with a value of the right type: NUL characters, or too many bytes."""
    if has_nul(value):
        return [{"field": at, "message": NUL_MESSAGE} for at in _nul_paths(value, path)]
    limit = _max_bytes(annotation)
    if limit is not None and isinstance(value, str) and len(value.encode()) > limit:
        return [{"field": path, "message": f"at most {limit} bytes in UTF-8"}]
    return []


def plain_type(annotation: Any) -> tuple[Any, tuple[msgspec.Meta, ...]]:
    """``annotation`` without ``Annotated`` (its constraints returned beside it) and
    without ``None`` or ``Unset`` in a union."""
    metas: tuple[msgspec.Meta, ...] = ()
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            args = get_args(annotation)
            annotation, metas = args[0], metas + tuple(m for m in args[1:] if isinstance(m, msgspec.Meta))
        elif origin in (Union, UnionType):
            members = [a for a in get_args(annotation) if a not in (type(None), msgspec.UnsetType)]
            if len(members) != 1:
                return annotation, metas
            annotation = members[0]
        else:
            return annotation, metas


def _part_errors(annotation: Any, value: Any, path: str) -> list[dict[str, str]]:
    """The errors of a list's items, a struct's fields or a mapping's values, each named
    by its own path (``items[1].unit_price``); empty when the parts are each valid (the
    whole is what is wrong: too many items, say) or this is no container."""
    plain, metas = plain_type(annotation)
    origin, args = get_origin(plain), get_args(plain)
    errors: list[dict[str, str]] = []
    if origin is list and args and isinstance(value, list):
        for n, item in enumerate(value):
            errors += _value_errors(args[0], item, f"{path}[{n}]")
        if errors:  # the list's own limits, named beside its items'
            errors += _value_errors(Annotated[list[Any], *metas] if metas else list[Any], value, path)
    elif origin is dict and len(args) == 2 and isinstance(value, dict):
        for key, item in value.items():
            errors += _value_errors(args[1], item, f"{path}.{key}")
    elif isinstance(plain, type) and issubclass(plain, msgspec.Struct) and isinstance(value, dict):
        errors = [{**e, "field": f"{path}.{e['field']}"} for e in field_errors(plain, value)]
    return errors


def _value_errors(annotation: Any, value: Any, path: str) -> list[dict[str, str]]:
    """Every error of ``value`` as ``annotation``, converted strictly, at ``path``."""
    try:
        msgspec.convert(value, annotation, strict=True)
    except msgspec.ValidationError as exc:
        if parts := _part_errors(annotation, value, path):
            return parts
        message = str(exc)
        location = _LOCATION.search(message)
        suffix = location.group(1) if location else ""
        plain, _ = plain_type(annotation)
        if not suffix and get_origin(plain) is Literal and message.startswith("Invalid enum value"):
            # msgspec names the value sent; the client needs the values it may send.
            return [{"field": path, "message": f"must be one of {', '.join(map(str, get_args(plain)))}"}]
        return [{"field": path + suffix, "message": readable(_LOCATION.sub("", message))}]
    return _beyond_type(annotation, value, path)


def field_errors(
    schema: type[msgspec.Struct], value: dict[str, Any], server_set: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """Every field of ``value`` that is unknown, missing or invalid for ``schema``, each
    bad item of a list and field of a nested object named by its own path.

    Each value is converted strictly (``loose_type_problems``); one of the right type is
    still refused for a NUL character (named where it is) or for more UTF-8 bytes than its
    ``MAX_BYTES``. Empty when every field is valid on its own (a rule across fields failed
    instead). A field the answer has and the body may not (``server_set``: an id, a count,
    each with what to say of it) is named so, not as unknown.
    """
    fields = {f.encode_name: f for f in msgspec.structs.fields(schema)}
    said = server_set or {}
    errors = [{"field": key, "message": said.get(key, "unknown field")} for key in value if key not in fields]
    for name, info in fields.items():
        if name not in value:
            if info.required:
                errors.append({"field": name, "message": "required"})
            continue
        errors += _value_errors(info.type, value[name], name)
    if getattr(schema, BODY_RULES, ()):
        errors += _rule_errors(schema, fields, value, errors)
    return errors


# A schema's class attribute: its ``BodyRule``s (bodies.Schema declares it).
BODY_RULES = "body_rules"
BodyRule = Callable[[dict[str, Any]], list[dict[str, str]]]


def _root(field: str) -> str:
    return re.split(r"[.\[]", field, maxsplit=1)[0]


def _rule_errors(
    schema: type[msgspec.Struct],
    fields: dict[str, msgspec.structs.FieldInfo],
    value: dict[str, Any],
    named: list[dict[str, str]],
) -> list[dict[str, str]]:
    """What ``schema``'s body rules say of the fields that passed their types, defaults
    filled in as the schema would, so that a body with a bad type and a broken rule (an
    empty title, an end before the start) is answered with both in one 422. Each rule
    leaves alone what it cannot judge without a field that failed or was left out."""
    bad = {_root(error["field"]) for error in named}
    typed: dict[str, Any] = {}
    for name, info in fields.items():
        if name in bad:
            continue
        if name in value:
            typed[info.name] = msgspec.convert(value[name], info.type, strict=True)
        elif info.default is not msgspec.NODEFAULT and info.default is not msgspec.UNSET:
            typed[info.name] = info.default
        elif info.default_factory is not msgspec.NODEFAULT:
            typed[info.name] = info.default_factory()
    found = [error for rule in getattr(schema, BODY_RULES) for error in rule(typed)]
    return [error for error in found if _root(error["field"]) not in bad]


SERVER_SET_MESSAGE = "set by the server; leave it out"
# A change's body: what the row answers with and the change may not carry was set by the
# server or when the row was made (a comment's document_id): either way, fixed now.
FIXED_MESSAGE = "cannot be changed; leave it out"


def server_set_fields(request: Request[Any, Any, Any]) -> Mapping[str, str]:
    """The fields the route answers with that its body may not carry (``id``, ``version``,
    ``reply_count``...), each with what to say of it: found once per handler, from its
    return type, body schema and method."""
    handler = request.route_handler
    try:
        return _SERVER_SET[handler]
    except KeyError:
        answer = handler.parsed_fn_signature.return_type.annotation
        if get_origin(answer) is Response:
            answer = get_args(answer)[0]
        schema = body_schema(request)
        names: frozenset[str] = frozenset()
        if schema is not None and isinstance(answer, type) and issubclass(answer, msgspec.Struct):
            written = {f.encode_name for f in msgspec.structs.fields(schema)}
            names = frozenset(f.encode_name for f in msgspec.structs.fields(answer)) - written
        changes = bool(handler.http_methods & {"PATCH", "PUT"})
        message = FIXED_MESSAGE if changes else SERVER_SET_MESSAGE
        _SERVER_SET[handler] = dict.fromkeys(names, message)
        return _SERVER_SET[handler]


_SERVER_SET: dict[BaseRouteHandler, dict[str, str]] = {}


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
    return field_errors(schema, value, server_set_fields(request))


def loose_type_problems(request: Request[Any, Any, Any], body: bytes) -> list[dict[str, str]]:
    """The fields of a JSON body whose values are of another type than the route's schema
    says (``"5"`` for 5, ``"true"`` for true, a number of seconds for a time), each named.

    Litestar converts bodies leniently (``strict=False``) and took all of those, a number
    as a Unix time among them. The body is decoded strictly once more here, before Litestar
    reads it (a few microseconds for a small body), so that what Litestar then converts is
    typed as the schema says. Empty when the body is well typed, or not a JSON object at
    all (Litestar answers that 400 itself).
    """
    schema = body_schema(request)
    if schema is None:
        return []
    try:
        msgspec.json.decode(body, type=schema, strict=True)
        # Well typed: field by field only when a value could still be refused (JSON spells
        # a NUL character only as this escape), so that it is named with the others. No
        # string of a JSON text has more bytes of UTF-8 than the text (an escape is longer
        # than what it stands for): a body within the smallest byte limit passes them all.
        limit = _byte_limit(schema)
        if b"\\u0000" not in body and (limit is None or len(body) <= limit):
            return []
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError:
        return []
    try:
        # Typed decoding stops at the first bad value, before it would see that the text
        # goes on past the JSON (``{"a": 1} x``): that is Litestar's 400 to answer.
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return []
    if not isinstance(value, dict):
        return []
    # Each a body's field (``errors.problem``).
    return field_errors(schema, value, server_set_fields(request))
