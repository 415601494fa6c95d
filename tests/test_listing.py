"""Lists: filters, full-text search, time windows and sort (API.md §5, platform/web/listing.py)."""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.api import (
    Api,
    Headers,
    assert_problem,
    create,
    endpoints_of,
    error_fields,
    secret_password,
)

pytest_plugins = ["tests.api"]


async def make_user(client: httpx.AsyncClient, owner: Headers, name: str, email: str) -> dict[str, Any]:
    body = {"name": name, "email": email, "phone": "+1 555 0199", "password": secret_password()}
    response = await client.post("/users", json=body, headers=owner)
    assert response.status_code == 201, response.text
    return response.json()


async def listed(client: httpx.AsyncClient, headers: Headers, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def names(page: dict[str, Any]) -> list[str]:
    return [row["name"] for row in page["items"]]


async def test_equality_filters_match_any_value_and_emails_in_any_case(api: Api, owner_a: Headers) -> None:
    _, client = api
    tag = uuid.uuid4().hex[:8]
    one = await make_user(client, owner_a, "Filter One", f"one-{tag}@example.test")
    two = await make_user(client, owner_a, "Filter Two", f"two-{tag}@example.test")
    await make_user(client, owner_a, "Filter Three", f"three-{tag}@example.test")

    page = await listed(client, owner_a, "/users", email=f"ONE-{tag}@Example.test")
    assert [row["id"] for row in page["items"]] == [one["id"]] and page["total"] == 1
    both = await listed(client, owner_a, "/users", email=[one["email"], two["email"]])
    assert {row["id"] for row in both["items"]} == {one["id"], two["id"]} and both["total"] == 2
    # An empty value is a bad value (422), not a question no row answers.
    for path, params in (("/users", {"email": ""}), ("/help-desk", {"tag": " "}), ("/media", {"type": ""})):
        empty = await client.get(path, params=params, headers=owner_a)
        assert error_fields(assert_problem(empty, 422)) == set(params), path


async def test_search_matches_word_stems_ranked_and_combines_with_filters(api: Api, owner_a: Headers) -> None:
    _, client = api
    tag = uuid.uuid4().hex[:8]
    walker = await make_user(client, owner_a, f"Walking Walker {tag}", f"walker-{tag}@example.test")
    await make_user(client, owner_a, f"Sitting Sitter {tag}", f"sitter-{tag}@example.test")
    page = await listed(client, owner_a, "/users", q=f"walks {tag}")
    assert [row["id"] for row in page["items"]] == [walker["id"]]
    # Ranked: the row naming both words comes before the row naming one.
    ranked = await listed(client, owner_a, "/users", q=f"{tag} or walks")
    assert ranked["items"][0]["id"] == walker["id"] and ranked["total"] == 2
    # Filters combine with AND.
    none = await listed(client, owner_a, "/users", q=f"walks {tag}", email=f"sitter-{tag}@example.test")
    assert none["total"] == 0 and none["items"] == []
    # Any text is a valid query: quotes, operators, punctuation.
    for text in ['"unclosed', "a & | ! (", "-", "'; DROP TABLE users; --"]:
        await listed(client, owner_a, "/users", q=text)


async def test_search_finds_an_email_whole_and_by_its_parts(api: Api, owner_a: Headers) -> None:
    # API.md §6: ``q`` on /users is "name or email"; the parser reads an email as one word.
    _, client = api
    tag = uuid.uuid4().hex[:8]
    mailer = await make_user(client, owner_a, "Plain Name", f"jo.mailer_{tag}+news@corp-{tag}.example")
    await make_user(client, owner_a, "Other Name", f"other-{tag}@elsewhere.example")
    for q in (
        f"corp-{tag}.example",
        f"corp-{tag}",
        f"mailer_{tag}",
        "news",
        mailer["email"],
        mailer["email"].upper(),
    ):
        page = await listed(client, owner_a, "/users", q=q)
        assert [row["id"] for row in page["items"]] == [mailer["id"]], q


async def test_search_never_finds_another_tenants_rows(api: Api, owner_a: Headers, owner_b: Headers) -> None:
    _, client = api
    tag = uuid.uuid4().hex[:8]
    await make_user(client, owner_b, f"Zebra {tag}", f"zebra-{tag}@example.test")
    assert (await listed(client, owner_a, "/users", q=f"zebra {tag}"))["total"] == 0
    assert (await listed(client, owner_b, "/users", q=f"zebra {tag}"))["total"] == 1
    assert (await listed(client, owner_a, "/users", email=f"zebra-{tag}@example.test"))["total"] == 0


async def test_sort_by_a_declared_field_either_way(api: Api, owner_a: Headers) -> None:
    _, client = api
    tag = uuid.uuid4().hex[:8]
    for name in ("Bravo", "alpha", "Charlie"):
        await make_user(client, owner_a, f"{name} {tag}", f"{name.lower()}-{tag}@example.test")
    up = await listed(client, owner_a, "/users", q=tag, sort="name")
    down = await listed(client, owner_a, "/users", q=tag, sort="-name")
    # In reading order, whatever the case (the database's C collation puts capitals first).
    assert names(up) == [f"{n} {tag}" for n in ("alpha", "Bravo", "Charlie")]
    assert names(down) == list(reversed(names(up)))


async def test_time_windows_select_rows_created_inside(api: Api, owner_a: Headers) -> None:
    _, client = api
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    group_id = await create(client, owner_a, "user-groups")
    after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    inside = await listed(
        client, owner_a, "/user-groups", **{"from": before.isoformat(), "to": after.isoformat()}
    )
    assert group_id in {row["id"] for row in inside["items"]}
    later = await listed(client, owner_a, "/user-groups", **{"from": after.isoformat()})
    assert group_id not in {row["id"] for row in later["items"]}
    earlier = await listed(client, owner_a, "/user-groups", to=before.isoformat())
    assert group_id not in {row["id"] for row in earlier["items"]}


async def test_reference_filters_on_user_meta_and_media(api: Api, owner_a: Headers) -> None:
    _, client = api
    meta_id = await create(client, owner_a, "user-meta")
    meta = (await client.get(f"/user-meta/{meta_id}", headers=owner_a)).json()
    for field in ("owner_id", "user_groups", "user_roles"):
        page = await listed(client, owner_a, "/user-meta", **{field: meta[field]})
        assert meta_id in {row["id"] for row in page["items"]}
        assert all(row[field] == meta[field] for row in page["items"])
    media_id = await create(client, owner_a, "media")
    media = (await client.get(f"/media/{media_id}", headers=owner_a)).json()
    page = await listed(client, owner_a, "/media", type=media["type"], owner_id=media["owner_id"])
    assert media_id in {row["id"] for row in page["items"]}
    assert (await listed(client, owner_a, "/media", type="no/such-type"))["total"] == 0


async def test_totals_past_the_last_page_count_the_filtered_rows(api: Api, owner_a: Headers) -> None:
    _, client = api
    tag = uuid.uuid4().hex[:8]
    for i in range(3):
        await make_user(client, owner_a, f"Paged {tag} {i}", f"paged{i}-{tag}@example.test")
    beyond = await listed(client, owner_a, "/users", q=tag, offset=10)
    assert beyond["items"] == [] and beyond["total"] == 3
    second = await listed(client, owner_a, "/users", q=tag, limit=2, offset=2)
    assert len(second["items"]) == 1 and second["total"] == 3


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"emial": "x@example.test"}, {"emial"}),
        ({"owner_id": "not-a-uuid"}, {"owner_id"}),
        ({"sort": "password"}, {"sort"}),
        ({"sort": ["name", "email"]}, {"sort"}),
        ({"q": ""}, {"q"}),
        ({"q": "x" * 501}, {"q"}),
        ({"from": "yesterday"}, {"from"}),
        ({"from": "2026-01-01T00:00:00"}, {"from"}),  # no offset: ambiguous
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, {"to"}),
        ({"email": "a\x00b"}, {"email"}),
        ({"nope": "1", "sort": "nope", "to": "x"}, {"nope", "sort", "to"}),
        # A bad page (Litestar's check) named with the list's own bad parameters.
        ({"limit": "0", "foo": "bar", "sort": "zz", "from": "x"}, {"limit", "foo", "sort", "from"}),
        ({"limit": ["1", "2"]}, {"limit"}),
    ],
)
async def test_bad_list_parameters_are_named_in_one_422(
    api: Api, owner_a: Headers, params: dict[str, Any], fields: set[str]
) -> None:
    _, client = api
    path = "/user-groups" if "owner_id" in params else "/users"
    response = await client.get(path, params=params, headers=owner_a)
    assert error_fields(assert_problem(response, 422)) == fields


async def test_every_list_refuses_unknown_parameters_and_documents_its_own(
    api: Api, owner_a: Headers
) -> None:
    app, client = api
    document = app.openapi_schema.to_schema()
    for endpoint in endpoints_of(app, "list"):
        response = await client.get(endpoint.url(), params={"no_such_parameter": "1"}, headers=owner_a)
        assert error_fields(assert_problem(response, 422)) == {"no_such_parameter"}, endpoint
        declared = {p["name"] for p in document["paths"][endpoint.path]["get"]["parameters"]}
        assert {"limit", "offset", "sort", "from", "to"} <= declared, endpoint
        for name in declared - {"limit", "offset"}:
            # Every documented parameter is accepted (an empty sort/filter value aside).
            value = {"sort": "created_at", "from": "2026-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}
            given = value.get(name, "x" if name == "q" else None)
            if given is None:
                continue
            ok = await client.get(endpoint.url(), params={name: given}, headers=owner_a)
            assert ok.status_code == 200, (endpoint, name, ok.text)


async def test_every_route_refuses_a_query_parameter_it_does_not_read(api: Api, owner_a: Headers) -> None:
    """Every operation of the document, lists or not, public or not: an unknown query
    parameter is 422 naming it, before anything is read or written (API.md §5)."""
    app, client = api
    document = app.openapi_schema.to_schema()
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if operation["operationId"] in ("health", "health_head"):
                continue  # takes any (a monitor's cache-buster): tests/test_hosts.py
            url = re.sub(
                r"\{[^}]*\}", lambda m: "1" if m.group(0) == "{version}" else str(uuid.uuid4()), path
            )
            response = await client.request(
                method.upper(), url, params={"no_such_parameter": "1"}, headers=owner_a
            )
            problem = assert_problem(response, 422)
            assert "no_such_parameter" in error_fields(problem), (method, path)
            checked += 1
    assert checked > 60


async def test_a_filter_on_a_field_of_few_values_refuses_any_other(api: Api, owner_a: Headers) -> None:
    """``?status=bogus`` is 422 naming it, not an empty page: every list filter whose field is
    one of a few values documents them, takes each, and refuses anything else."""
    app, client = api
    document = app.openapi_schema.to_schema()
    checked = set()
    for endpoint in endpoints_of(app, "list"):
        for parameter in document["paths"][endpoint.path]["get"]["parameters"]:
            choices = parameter["schema"].get("items", {}).get("enum")
            if parameter["name"] == "sort" or not choices:
                continue
            name = parameter["name"]
            bad = await client.get(endpoint.url(), params={name: [choices[0], "bogus"]}, headers=owner_a)
            assert error_fields(assert_problem(bad, 422)) == {name}, (endpoint, name)
            for choice in choices:
                ok = await client.get(endpoint.url(), params={name: choice}, headers=owner_a)
                assert ok.status_code == 200, (endpoint, name, ok.text)
            checked.add((endpoint.path, name))
    assert {
        ("/help-desk", "status"),
        ("/help-desk", "priority"),
        ("/projects", "status"),
        ("/chats", "kind"),
    } <= (checked), checked


def test_null_and_array_filters_and_the_default_order_compile_per_shape() -> None:
    """``?x=null`` (``Filter(null=True)``), array filters (``element=True``) and a
    resource's default order (listing.py), compiled without a database."""
    from sqlalchemy import ARRAY, Column, MetaData, Table, Uuid
    from sqlalchemy.types import DateTime

    from atrium.platform.web.listing import Filter, Listing

    table = Table(
        "things",
        MetaData(),
        Column("id", Uuid, primary_key=True),
        Column("parent_id", Uuid),
        Column("member_ids", ARRAY(Uuid)),
        Column("created_at", DateTime(timezone=True)),
    )

    def oldest_first_in_a_thread(request: Any, c: Any) -> list[Any]:
        if request.filtered("parent_id") and not request.has_null("parent_id"):
            return [c.created_at.asc()]
        return [c.created_at.desc()]

    listing = Listing(
        table,
        ("id", "parent_id"),
        [Filter("parent_id", null=True), Filter("member_id", column="member_ids", element=True)],
        default_order=oldest_first_in_a_thread,
    )

    def sql(**query: Any) -> str:
        from litestar.datastructures import MultiDict

        pairs = [
            (k, v) for k, values in query.items() for v in (values if isinstance(values, list) else [values])
        ]
        return listing.statement(listing.parse(MultiDict(pairs)))

    top = sql(parent_id="null")
    assert "parent_id IS NULL" in top and "ANY" not in top and "created_at DESC" in top
    thread = sql(parent_id=str(uuid.uuid4()))
    assert "IS NULL" not in thread and "created_at ASC" in thread
    both = sql(parent_id=["null", str(uuid.uuid4())])
    assert "ANY" in both and "IS NULL" in both
    assert "member_ids &&" in sql(member_id=str(uuid.uuid4()))
    # A request built by hand with no values yet (bench/baseline_app.py) still filters.
    from atrium.platform.web.listing import ListRequest

    assert "member_ids &&" in listing.statement(ListRequest(filters=(("member_id", []),)))
    # ``null`` is only for filters that take it.
    from litestar.plugins.problem_details import ProblemDetailsException

    with pytest.raises(ProblemDetailsException) as refused:
        sql(member_id="null")
    assert refused.value.status_code == 422


def test_array_filters_sort_keys_and_child_lists_compile_as_declared() -> None:
    """The Listing options the help desk needed: a parameter matching any element of an
    array column, a sort key ordered by another column, and a condition on every statement."""
    from litestar.datastructures import MultiDict
    from litestar.plugins.problem_details import ProblemDetailsException
    from sqlalchemy import ARRAY, Column, DateTime, Integer, MetaData, Table, Text, Uuid, bindparam

    from atrium.platform.web.listing import Filter, Listing, Sort

    table = Table(
        "things",
        MetaData(),
        Column("id", Uuid),
        Column("parent_id", Uuid),
        Column("tags", ARRAY(Text)),
        Column("level", Text),
        Column("level_rank", Integer),
        Column("created_at", DateTime(timezone=True)),
    )
    listing = Listing(
        table,
        ("id", "tags", "level", "created_at"),
        [Filter("tag", casefold=True, column="tags", element=True)],
        sort=[Sort("level", "level_rank")],
        within=table.c.parent_id == bindparam("parent_id", type_=Uuid()),
    )
    wanted = listing.parse(MultiDict([("tag", "VIP"), ("tag", "x"), ("sort", "-level")]))
    assert wanted.values() == {"f_tag": ["vip", "x"]}
    sql = listing.statement(wanted)
    assert "things.tags && %(f_tag)s" in sql and "ORDER BY things.level_rank DESC" in sql
    assert "things.parent_id = %(parent_id)s" in sql
    with pytest.raises(ProblemDetailsException) as bad:
        listing.parse(MultiDict([("tags", "x"), ("sort", "level_rank")]))
    assert {e["field"] for e in bad.value.extra["errors"]} == {"tags", "sort"}  # type: ignore[index]


def test_a_window_refinement_leaves_out_the_excluded_rows_in_a_shape_of_its_own() -> None:
    """``ListRequest.exclude`` (ResourceSpec.refine_window): rows a window's span matched
    but its refinement left out (an event series between its occurrences)."""
    from dataclasses import replace

    from sqlalchemy import Column, DateTime, MetaData, Table, Uuid

    from atrium.platform.web.listing import Listing, ListRequest

    table = Table(
        "spans",
        MetaData(),
        Column("id", Uuid, primary_key=True),
        Column("starts_at", DateTime(timezone=True)),
        Column("ends_at", DateTime(timezone=True)),
        Column("created_at", DateTime(timezone=True)),
    )
    listing = Listing(table, ("id",), window=("starts_at", "ends_at"))
    plain = ListRequest()
    refined = replace(plain, exclude=(uuid.uuid4(), uuid.uuid4()))
    assert plain.shape != refined.shape
    assert "excluded_ids" not in listing.statement(plain)
    assert "id != ALL" in listing.statement(refined)
    assert refined.values()["excluded_ids"] == list(refined.exclude)
