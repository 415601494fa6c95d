"""/invoices (API.md §10): exact money, server totals, the status machine, gapless numbers
under concurrency, payments answered once per Idempotency-Key, and the PDF."""

from __future__ import annotations

import asyncio
import datetime
import re
import uuid
import zlib
from decimal import Decimal
from fractions import Fraction
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from atrium.platform.db.binding import set_transaction_search_path
from atrium.tenants.invoices import money
from atrium.tenants.invoices.routes import NUMBER_FORMAT
from tests.api import Api, Headers, add_user, assert_problem, error_fields, new_tenant
from tests.conftest import login

pytest_plugins = ["tests.api"]


# --- the arithmetic, against an independent reference ---------------------------------------------


def half_even(value: Fraction) -> int:
    """Round a fraction to the nearest integer, ties to even, in exact rational arithmetic."""
    floor = value.numerator // value.denominator
    rest = value - floor
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and floor % 2 == 1):
        return floor + 1
    return floor


quantities = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("9999999.9999"), places=4)
rates = st.decimals(min_value=Decimal(0), max_value=Decimal(100), places=4)
prices = st.integers(min_value=0, max_value=10**12)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(quantities, prices, rates), min_size=1, max_size=20))
def test_line_rounding_matches_a_rational_reference(lines: list[tuple[Decimal, int, Decimal]]) -> None:
    subtotal = tax = 0
    for quantity, price, rate in lines:
        amount = half_even(Fraction(quantity) * price)
        line_tax = half_even(Fraction(amount) * Fraction(rate) / 100)
        assert money.line_amounts(money.Line(quantity, price, rate)) == (amount, line_tax)
        subtotal, tax = subtotal + amount, tax + line_tax
    computed = money.totals(money.Line(q, p, r) for q, p, r in lines)
    assert (computed.subtotal, computed.tax, computed.total) == (subtotal, tax, subtotal + tax)


def test_exponents_come_from_iso_4217() -> None:
    assert (money.exponent("JPY"), money.exponent("USD"), money.exponent("KWD")) == (0, 2, 3)
    assert {"USD", "EUR", "JPY", "KWD", "CHF"} <= money.currencies() and len(money.currencies()) > 150
    assert money.formatted(123456, "USD") == "$1,234.56"
    assert money.formatted(1234, "JPY") == "¥1,234"
    # Ties go to the even neighbour: 2.5 → 2, 3.5 → 4.
    assert money.line_amounts(money.Line(Decimal("0.5"), 5, Decimal(0)))[0] == 2
    assert money.line_amounts(money.Line(Decimal("0.5"), 7, Decimal(0)))[0] == 4


# --- the API ----------------------------------------------------------------------------------------


def body(**fields: Any) -> dict[str, Any]:
    return {
        "customer_name": "Acme Ltd",
        "customer_email": "billing@acme.example",
        "currency": "USD",
        "items": [
            {"description": "Widgets", "quantity": "2.5", "unit_price": 333, "tax_rate": "20"},
            {"description": "Setup", "quantity": "1", "unit_price": 5000, "tax_rate": "0"},
        ],
        **fields,
    }


async def invoice(client: httpx.AsyncClient, headers: Headers, **fields: Any) -> dict[str, Any]:
    response = await client.post("/invoices", json=body(**fields), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def act(
    client: httpx.AsyncClient, headers: Headers, row: dict[str, Any], action: str, **kw: Any
) -> httpx.Response:
    return await client.post(f"/invoices/{row['id']}/{action}", headers=headers, **kw)


async def test_totals_are_the_servers(api: Api, owner_a: Headers) -> None:
    _, client = api
    row = await invoice(client, owner_a)
    # 2.5 x 333 = 832.5 → 832 (even); its tax 20% = 166.4 → 166; 5000 untaxed.
    assert (row["subtotal"], row["tax"], row["total"]) == (5832, 166, 5998)
    assert (row["amount_paid"], row["amount_due"], row["status"], row["number"]) == (0, 5998, "draft", None)
    for forged in ("subtotal", "tax", "total"):
        refused = await client.post("/invoices", json=body(**{forged: 1}), headers=owner_a)
        assert error_fields(assert_problem(refused, 422)) == {forged}
    yen = await invoice(
        client, owner_a, currency="JPY", items=[{"description": "x", "quantity": "1.5", "unit_price": 101}]
    )
    assert yen["total"] == 152  # 151.5 → 152 (even), in yen


def syntactic_ok_body() -> dict[str, Any]:
    """An invoice whose fields are each well formed and which breaks every rule across them."""
    return body(
        currency="XYZ",
        issue_date="2026-05-02",
        due_date="2026-05-01",
        items=[{"description": "a", "quantity": "0", "unit_price": 1, "tax_rate": "101"}],
    )


async def test_every_bad_field_is_named(api: Api, owner_a: Headers) -> None:
    _, client = api
    bad = body(
        customer_name="",
        currency="XYZ",
        issue_date="2026-05-02",
        due_date="2026-05-01",
        items=[
            {"description": "a", "quantity": "0", "unit_price": 1, "tax_rate": "101"},
            {"description": "b", "quantity": "1.23456", "unit_price": 1},
        ],
    )
    # The types' errors and the rules' (a known currency, due on or after issue) in one answer,
    # each line's named beside the others'.
    first_line = {"currency", "due_date", "items[0].quantity", "items[0].tax_rate"}
    for sent, named in (
        (bad, {*first_line, "customer_name", "items[1].quantity"}),
        ({**syntactic_ok_body(), "customer_name": 7}, {*first_line, "customer_name"}),
        (syntactic_ok_body(), first_line),
    ):
        problem = assert_problem(await client.post("/invoices", json=sent, headers=owner_a), 422)
        assert error_fields(problem) == named
    for items in (
        [],
        [{"description": "x", "quantity": 1.5, "unit_price": 1}],
        [{"description": "x", "quantity": "1", "unit_price": -1}],
    ):
        refused = await client.post("/invoices", json=body(items=items), headers=owner_a)
        assert_problem(refused, 422)


async def test_a_field_that_fails_its_format_says_what_it_should_be(api: Api, owner_a: Headers) -> None:
    # README: "a field that fails a format says what it should be", not a bare "does not
    # have the expected format".
    _, client = api
    cases = {
        "currency": body(currency="usd"),
        "customer_email": body(customer_email="nobody"),
        "items[0].quantity": body(items=[{"description": "x", "quantity": "1.23456", "unit_price": 1}]),
        "items[0].tax_rate": body(
            items=[{"description": "x", "quantity": "1", "unit_price": 1, "tax_rate": "5%"}]
        ),
    }
    for field, sent in cases.items():
        problem = assert_problem(await client.post("/invoices", json=sent, headers=owner_a), 422)
        [error] = [e for e in problem["errors"] if e["field"] == field]
        assert "expected format" not in error["message"], error


async def test_only_drafts_change(api: Api, owner_a: Headers) -> None:
    _, client = api
    row = await invoice(client, owner_a)
    changed = await client.patch(
        f"/invoices/{row['id']}",
        json={"items": [{"description": "x", "quantity": "3", "unit_price": 100, "tax_rate": "10"}]},
        headers=owner_a,
    )
    assert changed.status_code == 200 and changed.json()["total"] == 330, changed.text
    assert_problem(await client.patch(f"/invoices/{row['id']}", json={"total": 1}, headers=owner_a), 422)
    assert (await act(client, owner_a, row, "finalize")).status_code == 200
    assert (
        assert_problem(
            await client.patch(f"/invoices/{row['id']}", json={"notes": "x"}, headers=owner_a), 409
        )["state"]
        == "open"
    )
    assert_problem(await client.delete(f"/invoices/{row['id']}", headers=owner_a), 409)
    draft = await invoice(client, owner_a)
    assert (await client.delete(f"/invoices/{draft['id']}", headers=owner_a)).status_code == 204


async def test_the_status_machine(api: Api, owner_a: Headers) -> None:
    _, client = api
    row = await invoice(client, owner_a)
    for action in ("pay", "void", "mark-uncollectible"):
        kw = {"json": {}} if action == "pay" else {}
        assert assert_problem(await act(client, owner_a, row, action, **kw), 409)["state"] == "draft"
    opened = (await act(client, owner_a, row, "finalize")).json()
    assert opened["status"] == "open" and re.fullmatch(r"INV-\d{6}", opened["number"])
    assert opened["issue_date"] == datetime.datetime.now(datetime.UTC).date().isoformat()
    assert_problem(await act(client, owner_a, row, "finalize"), 409)
    # Partial payments keep it open; an amount above what is due, or not positive, is 422.
    for amount in (0, -5, opened["amount_due"] + 1):
        assert error_fields(
            assert_problem(await act(client, owner_a, row, "pay", json={"amount": amount}), 422)
        ) == {"amount"}
    partial = (await act(client, owner_a, row, "pay", json={"amount": 1000})).json()
    assert (partial["status"], partial["amount_paid"], partial["amount_due"]) == ("open", 1000, 4998)
    uncollectible = (await act(client, owner_a, row, "mark-uncollectible")).json()
    assert uncollectible["status"] == "uncollectible"
    # Without an amount (the body left out altogether), the whole amount due (API.md §10).
    paid = (await act(client, owner_a, row, "pay")).json()
    assert (paid["status"], paid["amount_due"], paid["amount_paid"]) == ("paid", 0, 5998)
    assert error_fields(
        assert_problem(await act(client, owner_a, row, "pay", json={"amount": "5"}), 422)
    ) == {"amount"}
    for action in ("void", "mark-uncollectible", "finalize"):
        assert assert_problem(await act(client, owner_a, row, action), 409)["state"] == "paid"
    other = await invoice(client, owner_a)
    await act(client, owner_a, other, "finalize")
    assert (await act(client, owner_a, other, "void")).json()["status"] == "void"
    assert_problem(await act(client, owner_a, other, "pay", json={}), 409)
    dated = await invoice(client, owner_a, due_date="2000-01-01")
    refused = assert_problem(await act(client, owner_a, dated, "finalize"), 422)
    # The stored row's field, not the body's: the action has none.
    assert [(e["field"], e["source"]) for e in refused["errors"]] == [("due_date", "row")]


async def test_a_retried_payment_is_recorded_once(api: Api, owner_a: Headers) -> None:
    _, client = api
    row = await invoice(client, owner_a)
    key = {"Idempotency-Key": f"finalize-{row['id']}"}
    first = await act(client, {**owner_a, **key}, row, "finalize")
    again = await act(client, {**owner_a, **key}, row, "finalize")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["number"] == first.json()["number"]
    pay = {"Idempotency-Key": f"pay-{row['id']}"}
    answers = [await act(client, {**owner_a, **pay}, row, "pay", json={"amount": 100}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].content == answers[2].content
    assert (await client.get(f"/invoices/{row['id']}", headers=owner_a)).json()["amount_paid"] == 100
    reused = await act(client, {**owner_a, **pay}, row, "pay", json={"amount": 200})
    assert_problem(reused, 422)
    create_key = {**owner_a, "Idempotency-Key": f"create-{row['id']}"}
    made = [await client.post("/invoices", json=body(), headers=create_key) for _ in range(2)]
    assert made[0].json()["id"] == made[1].json()["id"]


async def test_filters_and_sort(api: Api, owner_a: Headers) -> None:
    _, client = api
    marker = "quokkaworks"
    a = await invoice(
        client,
        owner_a,
        customer_name=f"{marker} A",
        currency="EUR",
        customer_email="A@Quokka.example",
        issue_date="2026-03-01",
    )
    b = await invoice(
        client,
        owner_a,
        customer_name=f"{marker} B",
        items=[{"description": "x", "quantity": "1", "unit_price": 1}],
        issue_date="2026-04-01",
    )
    by_total = (await client.get("/invoices", params={"q": marker, "sort": "total"}, headers=owner_a)).json()
    assert [i["id"] for i in by_total["items"]] == [b["id"], a["id"]]
    eur = (await client.get("/invoices", params={"q": marker, "currency": "EUR"}, headers=owner_a)).json()
    assert [i["id"] for i in eur["items"]] == [a["id"]]
    # The filter refuses what the field refuses: the shape, and a code ISO 4217 does not have.
    for bad in ("eur", "XXZ"):
        refused = await client.get("/invoices", params={"currency": ["EUR", bad]}, headers=owner_a)
        assert error_fields(assert_problem(refused, 422)) == {"currency"}, bad
    email = (
        await client.get("/invoices", params={"customer_email": "a@quokka.example"}, headers=owner_a)
    ).json()
    assert [i["id"] for i in email["items"]] == [a["id"]]
    window = (
        await client.get(
            "/invoices",
            params={"q": marker, "from": "2026-03-15T00:00:00Z", "to": "2026-05-01T00:00:00Z"},
            headers=owner_a,
        )
    ).json()
    assert [i["id"] for i in window["items"]] == [b["id"]]
    # An issue date is its whole day (UTC): a window inside it, or ending in it, overlaps it.
    for inside in (
        {"from": "2026-04-01T12:00:00Z", "to": "2026-04-01T13:00:00Z"},
        {"to": "2026-04-01T00:00:01Z"},
        {"from": "2026-04-01T23:59:59Z"},
    ):
        found = (await client.get("/invoices", params={"q": marker, **inside}, headers=owner_a)).json()
        assert b["id"] in [i["id"] for i in found["items"]], inside
    # A value the field itself would refuse is 422, not an empty page.
    for bad in ({"currency": "usd"}, {"currency": "XX"}, {"customer_email": "nobody"}):
        refused = await client.get("/invoices", params=bad, headers=owner_a)
        assert error_fields(assert_problem(refused, 422)) == set(bad), bad
    for outside in ({"to": "2026-04-01T00:00:00Z"}, {"from": "2026-04-02T00:00:00Z"}):
        found = (await client.get("/invoices", params={"q": marker, **outside}, headers=owner_a)).json()
        assert b["id"] not in [i["id"] for i in found["items"]], outside


async def test_q_finds_an_invoice_by_its_number_notes_and_lines(api: Api, owner_a: Headers) -> None:
    _, client = api
    order, product = f"PO-{uuid.uuid4().hex[:8]}", f"gizmo{uuid.uuid4().hex[:8]}"
    domain = f"buyer{uuid.uuid4().hex[:8]}.example"
    noted = await invoice(client, owner_a, notes=f"Against purchase order {order}")
    mailed = await invoice(client, owner_a, customer_email=f"accounts@{domain}")
    lined = await invoice(
        client, owner_a, items=[{"description": f"Blue {product} units", "quantity": "1", "unit_price": 5}]
    )
    numbered = await act(client, owner_a, await invoice(client, owner_a), "finalize")
    number = numbered.json()["number"]

    async def found(q: str) -> list[str]:
        answer = await client.get("/invoices", params={"q": q}, headers=owner_a)
        assert answer.status_code == 200, answer.text
        return [row["id"] for row in answer.json()["items"]]

    assert await found(order) == [noted["id"]]
    assert await found(number) == [numbered.json()["id"]]
    assert await found(product) == [lined["id"]]
    # The customer's email, whole and by its domain (the parser reads an email as one word).
    assert await found(domain) == await found(f"accounts@{domain}") == [mailed["id"]]
    assert "item_descriptions" not in lined and "customer_email_words" not in mailed  # searched, never shown


def pdf_text(document: bytes) -> str:
    """The text drawn in a PDF (its content streams, inflated)."""
    parts = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", document, re.S):
        try:
            parts.append(zlib.decompress(stream).decode("latin-1"))
        except zlib.error:
            parts.append(stream.decode("latin-1"))
    return "".join(parts)


async def test_the_pdf(api: Api, owner_a: Headers) -> None:
    _, client = api
    row = await invoice(
        client, owner_a, customer_name="Zoë Müller-Łukasiewicz", currency="KWD", notes="Net 30"
    )
    draft = await client.get(f"/invoices/{row['id']}/pdf", headers=owner_a)
    assert draft.status_code == 200 and draft.headers["content-type"] == "application/pdf"
    assert draft.content.startswith(b"%PDF-")
    text = pdf_text(draft.content)
    assert "DRAFT" in text and "Widgets" in text and "Test Org" in text and "Zoë Müller" in text
    assert "KWD\xa05.998" in text  # 3 decimals, the ISO code (the core font lacks some symbols)
    # One version of an invoice is always the same document.
    assert (await client.get(f"/invoices/{row['id']}/pdf", headers=owner_a)).content == draft.content
    opened = (await act(client, owner_a, row, "finalize")).json()
    final = pdf_text((await client.get(f"/invoices/{row['id']}/pdf", headers=owner_a)).content)
    assert opened["number"] in final and "DRAFT" not in final


async def test_a_long_pdf_keeps_every_word_and_marks_every_draft_page(api: Api, owner_a: Headers) -> None:
    _, client = api
    long = "Consulting for the migration of the billing system, phase 2 of 3, including on-site workshops"
    items = [
        {"description": long if n == 0 else f"Line {n}", "quantity": "1", "unit_price": 100}
        for n in range(120)
    ]
    row = await invoice(client, owner_a, items=items)
    document = (await client.get(f"/invoices/{row['id']}/pdf", headers=owner_a)).content
    pages = document.count(b"/Type /Page\n") or len(re.findall(rb"/Type\s*/Page[^s]", document))
    assert pages > 1
    text = pdf_text(document)
    # Every word of the long description (wrapped, not cut), and DRAFT on every page.
    assert all(word in text for word in ("workshops", "on-site", "phase"))
    assert text.count("DRAFT") >= pages
    assert "Line 119" in text


async def test_members_hold_nothing_on_invoices(api: Api, owner_a: Headers) -> None:
    _, client = api
    member = await add_user(client, owner_a, role="Member")
    assert_problem(await client.get("/invoices", headers=member.headers), 403)


# --- gapless numbers under concurrency, through real PostgreSQL -------------------------------------


async def test_concurrent_finalizes_never_share_or_skip_a_number(api: Api, operator_engine: Engine) -> None:
    _, client = api
    made = new_tenant(operator_engine, "inv")
    owner = await login(client, made.host, made.owner_email, made.owner_password)
    rows = [await invoice(client, owner) for _ in range(24)]
    # A finalize that fails after taking its number gives it back: the draft with a bad
    # due date is refused in the same transaction.
    broken = await invoice(client, owner, due_date="2000-01-01")
    answers = await asyncio.gather(
        *(act(client, owner, row, "finalize") for row in rows), act(client, owner, broken, "finalize")
    )
    assert [a.status_code for a in answers] == [200] * len(rows) + [422]
    numbers = sorted(a.json()["number"] for a in answers[:-1])
    assert numbers == [f"INV-{n:06d}" for n in range(1, len(rows) + 1)]
    # Another tenant counts from 1 on its own.
    other = new_tenant(operator_engine, "inv")
    other_owner = await login(client, other.host, other.owner_email, other.owner_password)
    first = await invoice(client, other_owner)
    assert (await act(client, other_owner, first, "finalize")).json()["number"] == "INV-000001"


async def test_numbers_grow_past_six_digits(api: Api, operator_engine: Engine) -> None:
    """The number is written by SQL (routes._numbered), in NUMBER_FORMAT's form to the last
    digit: zero-padded to six, and longer, never cut, once six are used up."""
    _, client = api
    made = new_tenant(operator_engine, "inv")
    owner = await login(client, made.host, made.owner_email, made.owner_password)
    with operator_engine.begin() as conn:
        set_transaction_search_path(conn, made.tenant.schema)
        conn.execute(text("INSERT INTO invoice_counters (name, last) VALUES ('invoices', 999998)"))
    numbers = [(await act(client, owner, await invoice(client, owner), "finalize")).json() for _ in range(2)]
    assert (
        [n["number"] for n in numbers]
        == ["INV-999999", "INV-1000000"]
        == [NUMBER_FORMAT.format(n) for n in (999_999, 1_000_000)]
    )
    assert all(n["status"] == "open" and n["issue_date"] for n in numbers)
    # What the answer showed is what was stored.
    for answered in numbers:
        stored = (await client.get(f"/invoices/{answered['id']}", headers=owner)).json()
        assert (stored["number"], stored["updated_at"]) == (answered["number"], answered["updated_at"])
