"""Field definitions of a form and the answers to them, checked in full (API.md §11).

Both checks collect every problem before answering, so one 422 names each bad field
definition (``fields[2].options``) or each bad answer (``answers.age``). They work on
the decoded JSON values, not on msgspec structs: msgspec stops at the first error.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

from atrium.platform.web.errors import problem
from atrium.tenants.identity.schemas import EMAIL_PATTERN

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TYPES = ("text", "textarea", "number", "email", "date", "select", "multiselect", "checkbox", "rating")
CHOICE_TYPES = frozenset({"select", "multiselect"})
MAX_FIELDS = 100
MAX_OPTIONS = 100
MAX_LABEL = 500
MAX_OPTION = 500
MAX_HELP = 2000
# Text lengths when a field sets no ``max``, and the most it may set.
TEXT_LIMITS = {"text": 1_000, "textarea": 20_000}
# Ratings run between these, 1 to 5 unless the field says otherwise.
RATING_FLOOR, RATING_CEILING, RATING_DEFAULT = 0, 10, (1, 5)
PROPERTIES = frozenset({"key", "label", "type", "required", "options", "min", "max", "help"})
_EMAIL = re.compile(EMAIL_PATTERN)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Errors = list[dict[str, str]]


def _is_number(value: Any) -> bool:
    """A finite JSON number. An integer too large for a float (JSON allows any number of
    digits) is none: ``math.isfinite`` would raise on it, and no bound could compare it."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_integer(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _bounds(where: str, kind: str, field: Mapping[str, Any], errors: Errors) -> dict[str, Any]:
    """``min`` and ``max`` of one definition, checked for its type; the valid ones, kept."""
    given = {name: field[name] for name in ("min", "max") if field.get(name) is not None}
    if not given:
        return {}
    if kind not in ("number", "rating", *TEXT_LIMITS):
        errors.extend(
            {"field": f"{where}.{name}", "message": f"not allowed on a {kind} field"} for name in given
        )
        return {}
    kept = {}
    for name, value in given.items():
        if kind == "number":
            ok, rule = _is_number(value), "a finite number"
        elif kind == "rating":
            ok = _is_integer(value) and RATING_FLOOR <= value <= RATING_CEILING
            rule = f"a whole number from {RATING_FLOOR} to {RATING_CEILING}"
        else:
            ok = _is_integer(value) and 0 <= value <= TEXT_LIMITS[kind]
            rule = f"a length from 0 to {TEXT_LIMITS[kind]}"
        if ok:
            kept[name] = int(value) if kind != "number" else value
        else:
            errors.append({"field": f"{where}.{name}", "message": f"must be {rule}"})
    if "min" in kept and "max" in kept:
        low, high = kept["min"], kept["max"]
        if low > high or (kind == "rating" and low == high):
            errors.append({"field": f"{where}.max", "message": "must be above min"})
            return {}
    return kept


def _options(where: str, kind: str, field: Mapping[str, Any], errors: Errors) -> list[str] | None:
    options = field.get("options")
    if kind not in CHOICE_TYPES:
        if options is not None:
            errors.append({"field": f"{where}.options", "message": f"not allowed on a {kind} field"})
        return None
    if options is None:
        errors.append({"field": f"{where}.options", "message": f"required on a {kind} field"})
        return None
    if (
        not isinstance(options, list)
        or not 1 <= len(options) <= MAX_OPTIONS
        or not all(isinstance(o, str) and 1 <= len(o) <= MAX_OPTION for o in options)
    ):
        message = f"must be 1 to {MAX_OPTIONS} strings of 1 to {MAX_OPTION} characters"
        errors.append({"field": f"{where}.options", "message": message})
        return None
    if len(set(options)) != len(options):
        errors.append({"field": f"{where}.options", "message": "must be distinct"})
        return None
    return options


def _text(value: Any, most: int, least: int = 1) -> bool:
    return isinstance(value, str) and least <= len(value) <= most


def check_field(where: str, field: Any, errors: Errors) -> dict[str, Any] | None:
    """One definition, normalised (absent optional properties left out), or ``None`` when
    it has errors, which are added to ``errors``."""
    if not isinstance(field, dict):
        errors.append({"field": where, "message": "must be an object"})
        return None
    before = len(errors)
    errors.extend(
        {"field": f"{where}.{name}", "message": "unknown property"}
        for name in field
        if name not in PROPERTIES
    )
    key, label, kind = field.get("key"), field.get("label"), field.get("type")
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        message = "required" if key is None else "must be a lower-case letter, then up to 62 of a-z, 0-9, _"
        errors.append({"field": f"{where}.key", "message": message})
    if not _text(label, MAX_LABEL):
        message = "required" if label is None else f"must be 1 to {MAX_LABEL} characters"
        errors.append({"field": f"{where}.label", "message": message})
    if kind not in TYPES:
        message = "required" if kind is None else f"must be one of {', '.join(TYPES)}"
        errors.append({"field": f"{where}.type", "message": message})
    required = field.get("required", False)
    if not isinstance(required, bool):
        errors.append({"field": f"{where}.required", "message": "must be true or false"})
    help_text = field.get("help")
    if help_text is not None and not _text(help_text, MAX_HELP, 0):
        errors.append({"field": f"{where}.help", "message": f"must be at most {MAX_HELP} characters"})
    if kind in TYPES:
        options = _options(where, kind, field, errors)
        bounds = _bounds(where, kind, field, errors)
    if len(errors) > before:
        return None
    normal: dict[str, Any] = {"key": key, "label": label, "type": kind, "required": required}
    if options is not None:
        normal["options"] = options
    normal.update(bounds)
    if help_text is not None:
        normal["help"] = help_text
    return normal


def field_definition_errors(fields: Any) -> tuple[list[dict[str, Any]], Errors]:
    """Every definition normalised, and every error of every definition."""
    if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELDS:
        return [], [{"field": "fields", "message": f"must be a list of 1 to {MAX_FIELDS} fields"}]
    errors: Errors = []
    normal = [check_field(f"fields[{i}]", field, errors) for i, field in enumerate(fields)]
    seen: set[str] = set()
    for i, field in enumerate(fields):
        key = field.get("key") if isinstance(field, dict) else None
        if not isinstance(key, str):
            continue
        if key in seen:
            errors.append({"field": f"fields[{i}].key", "message": f"duplicate key {key!r}"})
        seen.add(key)
    return [n for n in normal if n is not None], errors


def definition_rules(values: dict[str, Any]) -> Errors:
    """A body rule (bodies.Schema) of a form: every error of its ``fields``, which become
    their normal form when they have none; nothing to say without them."""
    if values.get("fields") is None:
        return []
    normal, errors = field_definition_errors(values["fields"])
    if not errors:
        values["fields"] = normal
    return errors


def check_fields(fields: Any) -> list[dict[str, Any]]:
    """The definitions normalised, or a 422 naming every bad one."""
    normal, errors = field_definition_errors(fields)
    if errors:
        raise problem(422, "The form's fields are not valid.", errors=errors)
    return normal


# --- answers -------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    # API.md §11: "", null and [] count as missing; so does text of spaces alone, which
    # fills a required field in form only.
    return value is None or value == [] or (isinstance(value, str) and not value.strip())


def _valid_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def answer_error(field: Mapping[str, Any], value: Any) -> str | None:
    """What is wrong with ``value`` as the answer to ``field`` (present, not missing)."""
    kind, low, high = field["type"], field.get("min"), field.get("max")
    if kind in TEXT_LIMITS:
        if not isinstance(value, str):
            return "must be text"
        least, high = max(low or 0, 1), TEXT_LIMITS[kind] if high is None else high
        if not least <= len(value) <= high:
            return f"must be {least} to {high} characters"
    elif kind == "number":
        if not _is_number(value):
            return "must be a number"
        if (low is not None and value < low) or (high is not None and value > high):
            return (
                f"must be between {low if low is not None else '-∞'} and {high if high is not None else '∞'}"
            )
    elif kind == "rating":
        low, high = (
            RATING_DEFAULT[0] if low is None else low,
            RATING_DEFAULT[1] if high is None else high,
        )
        if not _is_integer(value) or not low <= value <= high:
            return f"must be a whole number from {low} to {high}"
    elif kind == "email":
        if not isinstance(value, str) or len(value) > 320 or not _EMAIL.match(value):
            return "must be an email address"
    elif kind == "date":
        if not _valid_date(value):
            return "must be a date, YYYY-MM-DD"
    elif kind == "checkbox":
        if not isinstance(value, bool):
            return "must be true or false"
    elif kind == "select":
        if not isinstance(value, str) or value not in field["options"]:
            return "must be one of the options"
    elif kind == "multiselect":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "must be a list of options"
        if not set(value) <= set(field["options"]):
            return "must be among the options"
        if len(set(value)) != len(value):
            return "must not repeat an option"
    return None


def answers_errors(fields: list[Mapping[str, Any]], answers: Any) -> tuple[dict[str, Any], Errors]:
    """The answers kept (missing ones dropped), and every unknown, missing or bad answer."""
    if not isinstance(answers, dict):
        return {}, [{"field": "answers", "message": "must be an object"}]
    by_key = {field["key"]: field for field in fields}
    errors: Errors = [
        {"field": f"answers.{key}", "message": "unknown key"} for key in answers if key not in by_key
    ]
    kept = {}
    for key, field in by_key.items():
        value = answers.get(key)
        if _missing(value):
            if field.get("required"):
                errors.append({"field": f"answers.{key}", "message": "required"})
            continue
        message = answer_error(field, value)
        if message is not None:
            errors.append({"field": f"answers.{key}", "message": message})
        elif field["type"] == "rating":
            kept[key] = int(value)  # 4.0 is the whole number 4, stored and exported as 4
        else:
            kept[key] = value
    return kept, errors


def check_answers(fields: list[Mapping[str, Any]], answers: Any) -> dict[str, Any]:
    """The answers as stored, or a 422 naming every bad one."""
    kept, errors = answers_errors(fields, answers)
    if errors:
        raise problem(422, "The answers are not valid.", errors=errors)
    return kept
