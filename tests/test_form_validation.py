"""The form validators against generated definitions and answers (issue 22): every valid one
is accepted as it is, and every one made invalid in one place is refused, naming that place
and nothing else."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from atrium.tenants.forms.fields import (
    RATING_DEFAULT,
    TEXT_LIMITS,
    TYPES,
    answers_errors,
    field_definition_errors,
)

KEYS = st.from_regex(r"\A[a-z][a-z0-9_]{0,12}\Z")
SHORT_TEXT = st.text(alphabet=string.ascii_letters + " -", min_size=1, max_size=20)
NUMBERS = st.integers(-1000, 1000) | st.floats(-1000, 1000, allow_nan=False)


@st.composite
def definitions(draw: st.DrawFn, key: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(TYPES))
    field: dict[str, Any] = {
        "key": key,
        "label": draw(SHORT_TEXT),
        "type": kind,
        "required": draw(st.booleans()),
    }
    if kind in ("select", "multiselect"):
        field["options"] = draw(st.lists(SHORT_TEXT, min_size=1, max_size=6, unique=True))
    if kind == "number" and draw(st.booleans()):
        low, high = sorted(draw(st.lists(NUMBERS, min_size=2, max_size=2)))
        field.update(min=low, max=high)
    if kind == "rating" and draw(st.booleans()):
        low = draw(st.integers(0, 9))
        field.update(min=low, max=draw(st.integers(low + 1, 10)))
    if kind in TEXT_LIMITS and draw(st.booleans()):
        low = draw(st.integers(0, 20))
        field.update(min=low, max=draw(st.integers(max(low, 1), TEXT_LIMITS[kind])))
    if draw(st.booleans()):
        field["help"] = draw(st.text(max_size=30))
    return field


@st.composite
def forms(draw: st.DrawFn) -> list[dict[str, Any]]:
    keys = draw(st.lists(KEYS, min_size=1, max_size=8, unique=True))
    return [draw(definitions(key)) for key in keys]


def answer_to(draw: st.DrawFn, field: dict[str, Any]) -> Any:
    kind, low, high = field["type"], field.get("min"), field.get("max")
    if kind in TEXT_LIMITS:
        least = max(low or 0, 1)
        # Spaces alone count as missing (fields.py): a real answer has something else.
        text = st.text(alphabet=string.printable, min_size=least, max_size=min(high or 40, least + 40))
        return draw(text.filter(str.strip))
    if kind == "number":
        if low is None:
            return draw(NUMBERS)
        return draw(st.floats(low, high, allow_nan=False) if low < high else st.just(low))
    if kind == "rating":
        low, high = (RATING_DEFAULT[0] if low is None else low, RATING_DEFAULT[1] if high is None else high)
        return draw(st.integers(low, high))
    if kind == "email":
        return draw(st.from_regex(r"\A[a-z]{1,10}@[a-z]{1,10}\.[a-z]{2,4}\Z"))
    if kind == "date":
        return draw(st.dates()).isoformat()
    if kind == "select":
        return draw(st.sampled_from(field["options"]))
    if kind == "multiselect":
        return draw(st.lists(st.sampled_from(field["options"]), min_size=1, unique=True))
    return draw(st.booleans())


@st.composite
def answered(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    fields = draw(forms())
    answers = {f["key"]: answer_to(draw, f) for f in fields if f["required"] or draw(st.booleans())}
    return fields, answers


# A wrong value for each type: (value, why), none of them missing ("", null, []).
WRONG = {
    "text": [5, True, ["x"]],
    "textarea": [{"a": 1}, 1.5],
    "number": ["5", True, [1]],
    "email": ["no-at-sign", 3, "a@b"],
    "date": ["2024-13-01", "2024-02-30", "yesterday", 20240101],
    "select": ["not an option", 1],
    "multiselect": ["not a list", ["not an option"], [1]],
    "checkbox": ["true", 1, 0],
    "rating": [11, -1, 2.5, "3"],
}


@settings(max_examples=200, deadline=None)
@given(answered())
def test_valid_answers_are_accepted_as_they_are(case: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
    fields, answers = case
    normal, errors = field_definition_errors(fields)
    assert errors == [] and len(normal) == len(fields)
    kept, errors = answers_errors(normal, answers)
    assert errors == [] and kept == answers


@settings(max_examples=200, deadline=None)
@given(answered(), st.data())
def test_an_answer_made_invalid_is_refused_by_its_key_alone(
    case: tuple[list[dict[str, Any]], dict[str, Any]], data: st.DataObject
) -> None:
    fields, answers = case
    field = data.draw(st.sampled_from(fields))
    key = field["key"]
    mutations = ["wrong", "unknown"]
    mutations += ["missing"] if field["required"] else []
    mutations += ["beyond"] if field["type"] in ("number", *TEXT_LIMITS) and "max" in field else []
    mutation = data.draw(st.sampled_from(mutations))
    bad = dict(answers)
    if mutation == "wrong":
        bad[key] = data.draw(st.sampled_from(WRONG[field["type"]]))
    elif mutation == "beyond":
        high = field["max"]
        bad[key] = high + 1 if field["type"] == "number" else "x" * (high + 1)
    elif mutation == "unknown":
        key = "zz_" + key[:50]
        bad[key] = "anything"
    else:
        bad[key] = data.draw(st.sampled_from(["", None, []]))
    _, errors = answers_errors(fields, bad)
    assert {e["field"] for e in errors} == {f"answers.{key}"}, (field, bad[key], errors)


# A change to one definition that makes it invalid: (property, value or None to remove).
BREAKS = [
    ("key", "Not A Key"),
    ("key", None),
    ("label", ""),
    ("label", "x" * 501),
    ("type", "colour"),
    ("required", "yes"),
    ("help", 5),
    ("surprise", 1),
]


@settings(max_examples=200, deadline=None)
@given(forms(), st.data())
def test_a_definition_made_invalid_is_refused_by_its_place_alone(
    fields: list[dict[str, Any]], data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(fields) - 1))
    field = dict(fields[index])
    breaks = list(BREAKS)
    kind = field["type"]
    if kind in ("select", "multiselect"):
        breaks += [("options", None), ("options", []), ("options", ["a", "a"]), ("min", 1)]
    else:
        breaks += [("options", ["a"])]
    if kind == "number":
        breaks += [("min", "low"), ("max", float("inf"))]
    if kind == "rating":
        breaks += [("max", 11), ("min", 2.5)]
    if kind in TEXT_LIMITS:
        breaks += [("max", TEXT_LIMITS[kind] + 1), ("min", -1)]
    if kind in ("email", "date", "checkbox"):
        breaks += [("max", 3)]
    name, value = data.draw(st.sampled_from(breaks))
    if value is None:
        field.pop(name, None)
    else:
        field[name] = value
    broken = [*fields[:index], field, *fields[index + 1 :]]
    _, errors = field_definition_errors(broken)
    assert {e["field"] for e in errors} == {f"fields[{index}].{name}"}, (field, errors)


@settings(max_examples=100, deadline=None)
@given(forms(), st.data())
def test_a_repeated_key_is_named_where_it_repeats(fields: list[dict[str, Any]], data: st.DataObject) -> None:
    copied = data.draw(st.sampled_from(fields))
    _, errors = field_definition_errors([*fields, {**copied, "label": "Again"}])
    assert [e["field"] for e in errors] == [f"fields[{len(fields)}].key"]


def test_an_integer_too_large_for_a_float_is_refused_not_raised() -> None:
    # JSON allows any number of digits; a 400-digit answer or bound was a 500 (OverflowError).
    huge = int("9" * 400)
    fields = [
        {"key": "n", "label": "N", "type": "number", "required": False},
        {"key": "r", "label": "R", "type": "rating", "required": False},
        {"key": "t", "label": "T", "type": "text", "required": False},
    ]
    _, errors = answers_errors(fields, {"n": huge, "r": huge, "t": huge})
    assert [e["field"] for e in errors] == ["answers.n", "answers.r", "answers.t"]
    bounds = [
        {"key": "n", "label": "N", "type": "number", "min": huge},
        {"key": "r", "label": "R", "type": "rating", "max": huge},
        {"key": "t", "label": "T", "type": "text", "max": -huge},
    ]
    _, errors = field_definition_errors(bounds)
    assert [e["field"] for e in errors] == ["fields[0].min", "fields[1].max", "fields[2].max"]
