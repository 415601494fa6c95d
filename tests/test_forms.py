"""Forms and responses (API.md §11): definitions checked at save, answers checked against the
current version, versions, the response count, visibility, public forms and the CSV export."""

from __future__ import annotations

import asyncio
import csv
import gc
import io
import json
import tracemalloc
import uuid
from typing import Any

import httpx
from sqlalchemy import Engine, text

from atrium.platform.settings import Settings
from atrium.platform.tenancy.naming import quote_ident
from tests.api import (
    FORM_ANSWERS,
    FORM_FIELDS,
    Api,
    Headers,
    add_user,
    assert_problem,
    error_fields,
    serve_api,
)
from tests.conftest import MadeTenant, login_owner

pytest_plugins = ["tests.api"]


async def make_form(client: httpx.AsyncClient, headers: Headers, **changes: Any) -> dict[str, Any]:
    body = {"title": "Survey", "status": "open", "fields": FORM_FIELDS, **changes}
    response = await client.post("/forms", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def answer(
    client: httpx.AsyncClient, headers: Headers, form_id: str, answers: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        "/form-responses", json={"form_id": form_id, "answers": answers}, headers=headers
    )


async def get_form(client: httpx.AsyncClient, headers: Headers, form_id: str) -> dict[str, Any]:
    response = await client.get(f"/forms/{form_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# --- definitions ---------------------------------------------------------------------------------


async def test_every_bad_field_definition_is_named_in_one_answer(api: Api, owner_a: Headers) -> None:
    _, client = api
    fields = [
        {"key": "Bad Key", "label": "x", "type": "text"},
        {"key": "ok", "label": "", "type": "text"},
        {"key": "pick", "label": "Pick", "type": "select"},
        {"key": "many", "label": "Many", "type": "multiselect", "options": ["a", "a"]},
        {"key": "age", "label": "Age", "type": "number", "options": ["x"], "min": 10, "max": 1},
        {"key": "when", "label": "When", "type": "date", "min": 1},
        {"key": "ok", "label": "Again", "type": "colour", "extra": True},
        {"key": "stars", "label": "Stars", "type": "rating", "max": 11},
        "not an object",
    ]
    response = await client.post("/forms", json={"title": "Bad", "fields": fields}, headers=owner_a)
    assert error_fields(assert_problem(response, 422)) == {
        "fields[0].key",
        "fields[1].label",
        "fields[2].options",
        "fields[3].options",
        "fields[4].options",
        "fields[4].max",
        "fields[5].min",
        "fields[6].key",
        "fields[6].type",
        "fields[6].extra",
        "fields[7].max",
        "fields[8]",
    }
    for empty in ([], [FORM_FIELDS[0]] * 101):
        response = await client.post("/forms", json={"title": "Bad", "fields": empty}, headers=owner_a)
        assert error_fields(assert_problem(response, 422)) == {"fields"}
    # A field of the form that fails its type, named with the definitions' errors.
    for body in ({"title": "", "fields": fields[:2]}, {"fields": fields[:2], "status": "live"}):
        response = await client.post("/forms", json=body, headers=owner_a)
        named = {"title", "fields[0].key", "fields[1].label"} | ({"status"} & body.keys())
        assert error_fields(assert_problem(response, 422)) == named


async def test_definitions_are_stored_normalised(api: Api, owner_a: Headers) -> None:
    _, client = api
    form = await make_form(
        client, owner_a, fields=[{"key": "q", "label": "Q", "type": "text", "options": None}]
    )
    assert form["fields"] == [{"key": "q", "label": "Q", "type": "text", "required": False}]
    assert (form["version"], form["response_count"], form["status"]) == (1, 0, "open")
    drafted = await client.post("/forms", json={"title": "T", "fields": FORM_FIELDS}, headers=owner_a)
    assert (drafted.json()["status"], drafted.json()["public"]) == ("draft", False)


async def test_bounds_read_back_as_they_were_written(
    api: Api, owner_a: Headers, tenant_a: MadeTenant
) -> None:
    # A whole bound is a JSON integer in every answer: the create and PATCH answers wrote
    # ``2.0`` where GET and the public form wrote ``2``.
    _, client = api
    fields = [
        {"key": "name", "label": "Name", "type": "text", "min": 2, "max": 10, "required": False},
        {"key": "price", "label": "Price", "type": "number", "min": 0.5, "max": 99, "required": False},
    ]
    created = await client.post(
        "/forms",
        json={"title": "Bounds", "status": "open", "public": True, "fields": fields},
        headers=owner_a,
    )
    assert created.status_code == 201, created.text
    form_id = created.json()["id"]
    patched = await client.patch(f"/forms/{form_id}", json={"title": "Bounds 2"}, headers=owner_a)
    got = await client.get(f"/forms/{form_id}", headers=owner_a)
    public = await client.get(f"/public/forms/{form_id}", headers={"Host": tenant_a.host})
    for response in (created, patched, got, public):
        assert response.status_code in (200, 201), response.text
        read = response.json()["fields"]
        assert read == fields, response.text
        assert [type(f[b]) for f in read for b in ("min", "max")] == [int, int, float, int], response.text


async def test_the_version_moves_only_when_the_fields_change(api: Api, owner_a: Headers) -> None:
    _, client = api
    form = await make_form(client, owner_a)
    url = f"/forms/{form['id']}"
    for change in ({"title": "New title"}, {"status": "closed"}, {"fields": FORM_FIELDS}, {"public": True}):
        response = await client.patch(url, json=change, headers=owner_a)
        assert response.status_code == 200 and response.json()["version"] == 1, (change, response.text)
    changed = await client.patch(url, json={"fields": FORM_FIELDS[:2]}, headers=owner_a)
    assert changed.json()["version"] == 2 and changed.json()["fields"] == FORM_FIELDS[:2]
    bad = await client.patch(url, json={"fields": [{"key": "x"}]}, headers=owner_a)
    assert error_fields(assert_problem(bad, 422)) == {"fields[0].label", "fields[0].type"}
    assert (await get_form(client, owner_a, form["id"]))["version"] == 2


# --- answers -------------------------------------------------------------------------------------


async def test_every_bad_answer_is_named_in_one_answer(api: Api, owner_a: Headers) -> None:
    _, client = api
    form = await make_form(client, owner_a)
    bad = {
        "bio": 12,  # wrong type
        "age": 151,  # out of bounds
        "email": "not-an-email",
        "born": "2024-02-30",
        "team": "green",  # not an option
        "tags": ["a", "z"],
        "agree": "yes",
        "score": 6,
        "unknown": "x",
    }  # and the required "name" is missing
    response = await answer(client, owner_a, form["id"], bad)
    expected = {f"answers.{key}" for key in [*bad, "name"]}
    assert error_fields(assert_problem(response, 422)) == expected
    assert (await get_form(client, owner_a, form["id"]))["response_count"] == 0


async def test_empty_values_count_as_missing(api: Api, owner_a: Headers) -> None:
    _, client = api
    form = await make_form(client, owner_a)
    for empty in ("", None, [], "   ", "\t\n"):
        response = await answer(client, owner_a, form["id"], {"name": empty})
        assert error_fields(assert_problem(response, 422)) == {"answers.name"}
    kept = await answer(
        client, owner_a, form["id"], {"name": "Ada", "bio": " ", "tags": [], "age": None, "score": 4.0}
    )
    assert kept.status_code == 201, kept.text
    # A rating of 4.0 is the whole number 4, kept as one.
    assert kept.json()["answers"] == {"name": "Ada", "score": 4}
    assert isinstance(kept.json()["answers"]["score"], int)


async def test_a_response_keeps_its_version_and_new_ones_follow_the_new_fields(
    api: Api, owner_a: Headers
) -> None:
    _, client = api
    form = await make_form(client, owner_a)
    first = await answer(client, owner_a, form["id"], FORM_ANSWERS)
    assert first.status_code == 201 and first.json()["form_version"] == 1
    renamed = [{**FORM_FIELDS[0], "key": "full_name"}]
    assert (await client.patch(f"/forms/{form['id']}", json={"fields": renamed}, headers=owner_a)).json()[
        "version"
    ] == 2
    old = await answer(client, owner_a, form["id"], {"name": "Ada"})
    assert error_fields(assert_problem(old, 422)) == {"answers.name", "answers.full_name"}
    second = await answer(client, owner_a, form["id"], {"full_name": "Ada"})
    assert second.status_code == 201 and second.json()["form_version"] == 2
    again = await client.get(f"/form-responses/{first.json()['id']}", headers=owner_a)
    assert again.json()["form_version"] == 1 and again.json()["answers"] == FORM_ANSWERS


async def test_changed_answers_are_checked_against_the_current_version(api: Api, owner_a: Headers) -> None:
    _, client = api
    form = await make_form(client, owner_a)
    made = (await answer(client, owner_a, form["id"], FORM_ANSWERS)).json()
    url = f"/form-responses/{made['id']}"
    await client.patch(f"/forms/{form['id']}", json={"fields": FORM_FIELDS[:1]}, headers=owner_a)
    stale = await client.patch(url, json={"answers": {"name": "Ada", "age": 3}}, headers=owner_a)
    assert error_fields(assert_problem(stale, 422)) == {"answers.age"}
    changed = await client.patch(url, json={"answers": {"name": "Grace"}}, headers=owner_a)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["answers"], changed.json()["form_version"]) == ({"name": "Grace"}, 2)
    await client.patch(f"/forms/{form['id']}", json={"status": "closed"}, headers=owner_a)
    assert_problem(await client.patch(url, json={"answers": {"name": "Ada"}}, headers=owner_a), 409)
    assert (await get_form(client, owner_a, form["id"]))["response_count"] == 1


async def test_only_an_open_form_takes_responses_and_the_count_is_kept(api: Api, owner_a: Headers) -> None:
    _, client = api
    form = await make_form(client, owner_a, status="draft")
    refused = assert_problem(await answer(client, owner_a, form["id"], FORM_ANSWERS), 409)
    assert "draft" in refused["detail"]
    await client.patch(f"/forms/{form['id']}", json={"status": "open"}, headers=owner_a)
    made = [await answer(client, owner_a, form["id"], FORM_ANSWERS) for _ in range(3)]
    assert all(r.status_code == 201 for r in made)
    assert (await get_form(client, owner_a, form["id"]))["response_count"] == 3
    assert (
        await client.delete(f"/form-responses/{made[0].json()['id']}", headers=owner_a)
    ).status_code == 204
    assert (await get_form(client, owner_a, form["id"]))["response_count"] == 2
    await client.patch(f"/forms/{form['id']}", json={"status": "closed"}, headers=owner_a)
    assert_problem(await answer(client, owner_a, form["id"], FORM_ANSWERS), 409)
    missing = await answer(client, owner_a, str(uuid.uuid4()), FORM_ANSWERS)
    assert error_fields(assert_problem(missing, 422)) == {"form_id"}


async def test_responses_are_seen_by_the_respondent_the_form_owner_and_manage(
    api: Api, owner_a: Headers
) -> None:
    _, client = api
    author = await add_user(client, owner_a, role="Member")
    respondent = await add_user(client, owner_a, role="Member")
    bystander = await add_user(client, owner_a, role="Member")
    # A Member may not create forms: the owner makes one and hands it to the author.
    form = await make_form(client, owner_a, owner_id=author.id)
    made = await answer(client, respondent.headers, form["id"], FORM_ANSWERS)
    assert made.status_code == 201 and made.json()["owner_id"] == respondent.id
    # Null would be an anonymous answer: only the public form takes one, so it is refused
    # here rather than recorded as the caller's.
    anonymous = {"form_id": form["id"], "answers": FORM_ANSWERS, "owner_id": None}
    refused = await client.post("/form-responses", json=anonymous, headers=respondent.headers)
    assert error_fields(assert_problem(refused, 422)) == {"owner_id"}
    url = f"/form-responses/{made.json()['id']}"
    for who in (respondent, author):
        assert (await client.get(url, headers=who.headers)).status_code == 200
        listed = await client.get("/form-responses", params={"form_id": form["id"]}, headers=who.headers)
        assert [r["id"] for r in listed.json()["items"]] == [made.json()["id"]]
    assert_problem(await client.get(url, headers=bystander.headers), 404)
    listed = await client.get("/form-responses", params={"form_id": form["id"]}, headers=bystander.headers)
    assert listed.json()["total"] == 0
    assert (await client.get(url, headers=owner_a)).status_code == 200


async def test_deleting_a_form_deletes_its_responses(api: Api, owner_a: Headers) -> None:
    _, client = api
    form = await make_form(client, owner_a)
    made = (await answer(client, owner_a, form["id"], FORM_ANSWERS)).json()
    assert (await client.delete(f"/forms/{form['id']}", headers=owner_a)).status_code == 204
    assert_problem(await client.get(f"/form-responses/{made['id']}", headers=owner_a), 404)


# --- public forms --------------------------------------------------------------------------------


async def test_a_public_open_form_is_read_and_answered_without_a_token(
    api: Api, owner_a: Headers, tenant_a: MadeTenant
) -> None:
    _, client = api
    anonymous = {"Host": tenant_a.host}
    form = await make_form(client, owner_a, public=True)
    shown = await client.get(f"/public/forms/{form['id']}", headers=anonymous)
    assert shown.status_code == 200, shown.text
    assert shown.json() == {k: form[k] for k in ("id", "title", "description", "fields", "version")}
    posted = await client.post(
        f"/public/forms/{form['id']}/responses", json={"answers": FORM_ANSWERS}, headers=anonymous
    )
    assert posted.status_code == 201, posted.text
    assert posted.headers["Location"] == f"/form-responses/{posted.json()['id']}"
    row = await client.get(posted.headers["Location"], headers=owner_a)
    assert row.json()["owner_id"] is None and row.json()["answers"] == FORM_ANSWERS
    bad = await client.post(
        f"/public/forms/{form['id']}/responses", json={"answers": {"age": "old"}}, headers=anonymous
    )
    assert error_fields(assert_problem(bad, 422)) == {"answers.name", "answers.age"}
    assert (await get_form(client, owner_a, form["id"]))["response_count"] == 1
    # A retry with its Idempotency-Key is the first answer again, per client address: a
    # browser resending a submit after a network error stores one response.
    url, keyed = f"/public/forms/{form['id']}/responses", {**anonymous, "Idempotency-Key": "k-1"}
    twice = [await client.post(url, json={"answers": FORM_ANSWERS}, headers=keyed) for _ in range(2)]
    assert [r.status_code for r in twice] == [201, 201] and twice[0].json() == twice[1].json()
    assert twice[1].headers["Location"] == twice[0].headers["Location"]
    assert "Idempotent-Replayed" not in twice[0].headers and twice[1].headers["Idempotent-Replayed"] == "true"
    other = await client.post(url, json={"answers": {**FORM_ANSWERS, "age": 40}}, headers=keyed)
    assert error_fields(assert_problem(other, 422)) == {"Idempotency-Key"}
    elsewhere = httpx.ASGITransport(app=api[0], client=("198.51.100.7", 4321))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://test") as stranger:
        theirs = await stranger.post(url, json={"answers": FORM_ANSWERS}, headers=keyed)
    assert theirs.status_code == 201 and theirs.json()["id"] != twice[0].json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers
    assert (await get_form(client, owner_a, form["id"]))["response_count"] == 3
    too_long = await client.post(
        url, json={"answers": FORM_ANSWERS}, headers={**anonymous, "Idempotency-Key": "k" * 256}
    )
    assert error_fields(assert_problem(too_long, 422)) == {"Idempotency-Key"}


async def test_a_form_not_public_or_not_open_is_not_found_in_public(
    api: Api, owner_a: Headers, tenant_a: MadeTenant
) -> None:
    _, client = api
    anonymous = {"Host": tenant_a.host}
    hidden = [
        await make_form(client, owner_a, public=False),
        await make_form(client, owner_a, public=True, status="draft"),
        await make_form(client, owner_a, public=True, status="closed"),
    ]
    for form in hidden:
        assert_problem(await client.get(f"/public/forms/{form['id']}", headers=anonymous), 404)
        posted = await client.post(
            f"/public/forms/{form['id']}/responses", json={"answers": FORM_ANSWERS}, headers=anonymous
        )
        assert_problem(posted, 404)
        assert (await get_form(client, owner_a, form["id"]))["response_count"] == 0


async def test_public_answers_are_limited_in_size(api: Api, owner_a: Headers, tenant_a: MadeTenant) -> None:
    _, client = api
    form = await make_form(client, owner_a, public=True)
    huge = {"answers": {"name": "x" * (1024 * 1024)}}
    response = await client.post(
        f"/public/forms/{form['id']}/responses", json=huge, headers={"Host": tenant_a.host}
    )
    assert "1048576" in assert_problem(response, 413)["detail"]


async def test_public_posts_are_limited_per_client_address(settings: Settings, tenant_a: MadeTenant) -> None:
    async with serve_api(settings.with_overrides(public_posts_per_minute=3)) as (app, client):
        owner = await login_owner(client, tenant_a)
        form = await make_form(client, owner, public=True)
        url, anonymous = f"/public/forms/{form['id']}/responses", {"Host": tenant_a.host}
        ours = httpx.ASGITransport(app=app, client=(f"10.9.{uuid.uuid4().int % 250}.1", 4000))
        theirs = httpx.ASGITransport(app=app, client=("10.8.0.2", 4000))
        async with (
            httpx.AsyncClient(transport=ours, base_url="http://localhost") as mine,
            httpx.AsyncClient(transport=theirs, base_url="http://localhost") as other,
        ):
            for _ in range(3):
                assert (
                    await mine.post(url, json={"answers": FORM_ANSWERS}, headers=anonymous)
                ).status_code == 201
            limited = await mine.post(url, json={"answers": FORM_ANSWERS}, headers=anonymous)
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert limited.headers["content-type"].startswith("application/problem+json")
            # Another address is counted apart.
            assert (
                await other.post(url, json={"answers": FORM_ANSWERS}, headers=anonymous)
            ).status_code == 201
        assert (await get_form(client, owner, form["id"]))["response_count"] == 4


async def test_a_nul_character_in_an_answer_is_refused_on_every_path(
    api: Api, owner_a: Headers, tenant_a: MadeTenant
) -> None:
    _, client = api
    form = await make_form(client, owner_a, public=True)
    bad = {**FORM_ANSWERS, "bio": "a\x00b"}
    # Named as every answer's error is (API.md §11: answers.<key>).
    assert error_fields(assert_problem(await answer(client, owner_a, form["id"], bad), 422)) == {
        "answers.bio"
    }
    kept = await answer(client, owner_a, form["id"], FORM_ANSWERS)
    patched = await client.patch(
        f"/form-responses/{kept.json()['id']}", json={"answers": bad}, headers=owner_a
    )
    assert error_fields(assert_problem(patched, 422)) == {"answers.bio"}
    public = await client.post(
        f"/public/forms/{form['id']}/responses", json={"answers": bad}, headers={"Host": tenant_a.host}
    )
    assert error_fields(assert_problem(public, 422)) == {"answers.bio"}
    assert (await get_form(client, owner_a, form["id"]))["response_count"] == 1


# --- CSV export ----------------------------------------------------------------------------------


async def test_the_export_streams_every_response_oldest_first_with_formulas_neutralised(
    api: Api, owner_a: Headers, tenant_a: MadeTenant
) -> None:
    _, client = api
    form = await make_form(client, owner_a, public=True)
    first = await answer(client, owner_a, form["id"], FORM_ANSWERS)
    tricky = {"name": "=1+2", "bio": '-3, "quoted"\nnext line', "tags": ["@b"], "agree": False}
    second = await client.post(
        f"/public/forms/{form['id']}/responses", json={"answers": tricky}, headers={"Host": tenant_a.host}
    )
    assert second.status_code == 201
    exported = await client.get(f"/forms/{form['id']}/responses.csv", headers=owner_a)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.headers["content-disposition"] == f'attachment; filename="form-{form["id"]}.csv"'
    header, *rows = list(csv.reader(io.StringIO(exported.text)))
    assert header == ["id", "submitted_at", "respondent", *(f["key"] for f in FORM_FIELDS)]
    owner_email = tenant_a.owner_email
    assert rows[0][:3] == [first.json()["id"], rows[0][1], owner_email] and rows[0][1].endswith("Z")
    assert rows[0][3:] == [
        "Ada",
        "Writes code.",
        "36",
        "ada@example.test",
        "1990-12-10",
        "red",
        "a; c",
        "true",
        "4",
        "",
        "",
    ]
    assert rows[1][:3] == [second.json()["id"], rows[1][1], ""]
    assert rows[1][3:] == ["'=1+2", '\'-3, "quoted"\nnext line', "", "", "", "", "'@b", "false", "", "", ""]
    third = {"name": "\tTab", "bio": "\rReturn", "email": "+plus@example.test", "team": "red"}
    assert (await answer(client, owner_a, form["id"], third)).status_code == 201
    exported = await client.get(f"/forms/{form['id']}/responses.csv", headers=owner_a)
    last = list(csv.reader(io.StringIO(exported.text)))[-1]
    assert last[3:7] == ["'\tTab", "'\rReturn", "", "'+plus@example.test"]


async def test_the_export_reads_answers_kept_from_an_earlier_version_of_the_fields(
    api: Api, owner_a: Headers
) -> None:
    """A response keeps the answers of its version: a key whose field changed type since
    reads as it was stored, where a multiselect's join once failed the whole export."""
    _, client = api
    fields = [
        {"key": "pick", "label": "Pick", "type": "text", "required": False},
        {"key": "many", "label": "Many", "type": "multiselect", "required": False, "options": ["x", "y"]},
    ]
    form = await make_form(client, owner_a, fields=fields)
    assert (
        await answer(client, owner_a, form["id"], {"pick": "-1, a", "many": ["y", "x"]})
    ).status_code == 201
    swapped = [
        {"key": "pick", "label": "Pick", "type": "multiselect", "required": False, "options": ["a", "b"]},
        {"key": "many", "label": "Many", "type": "text", "required": False},
    ]
    changed = await client.patch(f"/forms/{form['id']}", json={"fields": swapped}, headers=owner_a)
    assert changed.status_code == 200 and changed.json()["version"] == 2, changed.text
    assert (await answer(client, owner_a, form["id"], {"pick": ["b", "a"], "many": "=z"})).status_code == 201
    exported = await client.get(f"/forms/{form['id']}/responses.csv", headers=owner_a)
    assert exported.status_code == 200, exported.text
    header, *rows = list(csv.reader(io.StringIO(exported.text)))
    assert header[3:] == ["pick", "many"]
    assert [row[3:] for row in rows] == [["'-1, a", '["y", "x"]'], ["b; a", "'=z"]]


async def test_the_export_is_for_the_form_owner_and_manage(api: Api, owner_a: Headers) -> None:
    _, client = api
    member = await add_user(client, owner_a, role="Member")
    admin = await add_user(client, owner_a, role="Admin")
    form = await make_form(client, owner_a)
    url = f"/forms/{form['id']}/responses.csv"
    assert_problem(await client.get(url, headers=member.headers), 403)
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    handed = await client.patch(f"/forms/{form['id']}", json={"owner_id": member.id}, headers=owner_a)
    assert handed.status_code == 200
    assert (await client.get(url, headers=member.headers)).status_code == 200
    assert_problem(await client.get(f"/forms/{uuid.uuid4()}/responses.csv", headers=owner_a), 404)


async def download(
    app: Any, path: str, headers: Headers, give_up_after: int | None = None
) -> tuple[int, int, int]:
    """GET ``path`` straight through the ASGI app, counting the body's bytes without keeping
    them (httpx's ASGI transport keeps the whole body); the status, the bytes and the peak of
    Python memory traced meanwhile. ``give_up_after``: the client disconnects after that
    many chunks of the body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("localhost", 80),
    }
    done, asked = asyncio.Event(), False
    seen = {"status": 0, "bytes": 0, "chunks": 0}

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
        elif message["type"] == "http.response.body":
            seen["bytes"] += len(message.get("body", b""))
            seen["chunks"] += 1
            if not message.get("more_body") or seen["chunks"] == give_up_after:
                done.set()

    gc.collect()
    tracemalloc.start()
    try:
        await app(scope, receive, send)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seen["status"], seen["bytes"], peak


def seed_responses(engine: Engine, made: MadeTenant, form_id: str, answers: str, rows: int) -> None:
    """``rows`` responses with ``answers`` (JSON) to the form, written by SQL for speed."""
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {quote_ident(made.tenant.schema)}.form_responses"
                " (form_id, answers, form_version) SELECT :form, CAST(:answers AS jsonb), 1"
                " FROM generate_series(1, :rows)"
            ),
            {"form": form_id, "answers": answers, "rows": rows},
        )


async def test_the_export_streams_in_flat_memory(
    api: Api, owner_a: Headers, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    """Five times the responses, the same memory: the rows are fetched and sent a batch at a
    time, never gathered (each response here is about 1 KB of CSV)."""
    app, client = api
    answers = json.dumps({**FORM_ANSWERS, "bio": "x" * 1000})
    peaks = {}
    sizes = {}
    for rows in (8_000, 40_000):
        form = await make_form(client, owner_a)
        seed_responses(operator_engine, tenant_a, form["id"], answers, rows)
        status, sizes[rows], peaks[rows] = await download(app, f"/forms/{form['id']}/responses.csv", owner_a)
        assert status == 200 and sizes[rows] > rows * 1000
    assert peaks[40_000] < peaks[8_000] * 1.5, peaks
    assert peaks[40_000] < sizes[40_000] / 3, (peaks, sizes)


async def test_a_download_given_up_midway_gives_its_connection_back(
    api: Api, owner_a: Headers, tenant_a: MadeTenant, operator_engine: Engine
) -> None:
    app, client = api
    form = await make_form(client, owner_a)
    seed_responses(operator_engine, tenant_a, form["id"], json.dumps(FORM_ANSWERS), 5000)
    pool = app.state.engine.pool
    status, size, _ = await download(app, f"/forms/{form['id']}/responses.csv", owner_a, give_up_after=2)
    assert status == 200 and 0 < size < 5000 * 50
    for _ in range(50):
        if pool.checkedout() == 0:
            break
        await asyncio.sleep(0.05)
    assert pool.checkedout() == 0
    # The app goes on serving, the same export included.
    again = await client.get(f"/forms/{form['id']}/responses.csv", headers=owner_a)
    assert again.status_code == 200 and len(again.text.splitlines()) == 5001
