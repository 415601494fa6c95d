"""Actions and state transitions (API.md §5, platform/web/actions.py), on a resource made here.

None of today's resources has states yet (help desk and invoices will), so the convention
is proven on a small ticket table created in one tenant's schema for this module.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import DateTime, Engine, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from atrium.platform.db.binding import set_transaction_search_path
from atrium.platform.settings import Settings
from atrium.platform.web.actions import Action
from atrium.platform.web.bodies import Schema
from atrium.platform.web.resources import ResourceSpec, crud_router
from atrium.platform.web.services import CrudService
from tests.conftest import MadeTenant, login_owner, serve

Headers = dict[str, str]


class Base(DeclarativeBase):
    metadata = MetaData()  # not the tenant metadata: no real tenant gets this table


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Ticket(Base):
    __tablename__ = "action_tickets"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(20), default="open")
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now)
    updated_at: Mapped[datetime.datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)


class TicketRead(msgspec.Struct):
    id: uuid.UUID
    status: str
    note: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class TicketCreate(Schema):
    note: str | None = None


class TicketUpdate(Schema):
    status: str | msgspec.UnsetType = msgspec.UNSET
    note: str | msgspec.UnsetType | None = msgspec.UNSET


class Note(Schema):
    note: str


class TicketService(CrudService[Ticket]):
    model = Ticket
    transitions = {"open": {"pending", "solved"}, "pending": {"open", "solved"}, "solved": {"open", "closed"}}

    async def solve(self, item: Ticket, _data: None) -> None:
        item.status = "solved"

    async def close(self, item: Ticket, _data: None) -> None:
        item.status = "closed"

    async def annotate(self, item: Ticket, data: Note) -> None:
        item.note = data.note


SPEC = ResourceSpec(
    "action-tickets",
    TicketService,
    TicketRead,
    TicketCreate,
    TicketUpdate,
    actions=[
        Action("solve", "solve", allowed={"open", "pending"}),
        Action("close", "close", allowed={"solved"}, permission="manage"),
        Action("annotate", "annotate", body=Note),
    ],
)


@pytest.fixture
def ticket_tenant(operator_engine: Engine, make_tenant: Callable[..., MadeTenant]) -> MadeTenant:
    made = make_tenant()
    with operator_engine.begin() as conn:
        set_transaction_search_path(conn, made.tenant.schema)
        Base.metadata.create_all(conn)
    return made


@asynccontextmanager
async def ticket_api(
    settings: Settings, made: MadeTenant
) -> AsyncIterator[tuple[httpx.AsyncClient, Headers]]:
    async with serve(settings, route_handlers=[crud_router(SPEC)]) as (_, client):
        yield client, await login_owner(client, made)


async def new_ticket(client: httpx.AsyncClient, headers: Headers) -> dict[str, Any]:
    response = await client.post("/action-tickets", json={}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_an_action_answers_the_row_and_refuses_a_state_that_does_not_allow_it(
    settings: Settings, ticket_tenant: MadeTenant
) -> None:
    async with ticket_api(settings, ticket_tenant) as (client, owner):
        ticket = await new_ticket(client, owner)
        solved = await client.post(f"/action-tickets/{ticket['id']}/solve", headers=owner)
        assert solved.status_code == 200, solved.text
        assert solved.json()["status"] == "solved"
        again = await client.post(f"/action-tickets/{ticket['id']}/solve", headers=owner)
        assert again.status_code == 409
        problem = again.json()
        assert problem["type"] == "invalid-state" and problem["state"] == "solved"
        assert "solved" in problem["detail"] and "open or pending" in problem["detail"]
        closed = await client.post(f"/action-tickets/{ticket['id']}/close", headers=owner)
        assert closed.json()["status"] == "closed"
        missing = await client.post(f"/action-tickets/{uuid.uuid4()}/solve", headers=owner)
        assert missing.status_code == 404


async def test_an_action_with_a_body_validates_it(settings: Settings, ticket_tenant: MadeTenant) -> None:
    async with ticket_api(settings, ticket_tenant) as (client, owner):
        ticket = await new_ticket(client, owner)
        noted = await client.post(
            f"/action-tickets/{ticket['id']}/annotate", json={"note": "hi"}, headers=owner
        )
        assert noted.status_code == 200 and noted.json()["note"] == "hi"
        bad = await client.post(f"/action-tickets/{ticket['id']}/annotate", json={"nope": 1}, headers=owner)
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} == {"note", "nope"}


async def test_patching_the_state_follows_the_transitions(
    settings: Settings, ticket_tenant: MadeTenant
) -> None:
    async with ticket_api(settings, ticket_tenant) as (client, owner):
        ticket = await new_ticket(client, owner)
        url = f"/action-tickets/{ticket['id']}"
        pending = await client.patch(url, json={"status": "pending"}, headers=owner)
        assert pending.json()["status"] == "pending"
        refused = await client.patch(url, json={"status": "closed"}, headers=owner)
        assert refused.status_code == 409 and refused.json()["state"] == "pending"
        assert (await client.get(url, headers=owner)).json()["status"] == "pending"
        # The same state again is no transition; other fields change freely.
        same = await client.patch(url, json={"status": "pending", "note": "n"}, headers=owner)
        assert same.status_code == 200 and same.json()["note"] == "n"


async def test_concurrent_actions_pass_the_state_check_once(
    settings: Settings, ticket_tenant: MadeTenant
) -> None:
    async with ticket_api(settings, ticket_tenant) as (client, owner):
        ticket = await new_ticket(client, owner)
        answers = await asyncio.gather(
            *(client.post(f"/action-tickets/{ticket['id']}/solve", headers=owner) for _ in range(6))
        )
        assert sorted(a.status_code for a in answers) == [200, 409, 409, 409, 409, 409]


def test_actions_are_documented() -> None:
    router = crud_router(SPEC)
    paths = {route.path: route for route in router.routes}
    assert {"/action-tickets/{item_id:uuid}/solve", "/action-tickets/{item_id:uuid}/annotate"} <= set(paths)


async def test_actions_send_the_etag_and_honour_if_match(
    settings: Settings, ticket_tenant: MadeTenant
) -> None:
    async with ticket_api(settings, ticket_tenant) as (client, owner):
        ticket = await new_ticket(client, owner)
        url = f"/action-tickets/{ticket['id']}"
        tag = (await client.get(url, headers=owner)).headers["ETag"]
        noted = await client.post(f"{url}/annotate", json={"note": "a"}, headers={**owner, "If-Match": tag})
        assert noted.status_code == 200 and noted.headers["ETag"] != tag
        stale = await client.post(f"{url}/solve", headers={**owner, "If-Match": tag})
        assert stale.status_code == 412
        assert (await client.get(url, headers=owner)).json()["status"] == "open"


async def test_an_action_is_answered_once_per_idempotency_key(
    settings: Settings, ticket_tenant: MadeTenant
) -> None:
    """Every POST honours Idempotency-Key (API.md §5): a retried action replays its answer
    and does nothing more, even when the row has changed since."""
    async with ticket_api(settings, ticket_tenant) as (client, owner):
        ticket = await new_ticket(client, owner)
        url = f"/action-tickets/{ticket['id']}"
        keyed = {**owner, "Idempotency-Key": f"solve-{ticket['id']}"}
        first = await client.post(f"{url}/solve", headers=keyed)
        assert first.status_code == 200 and "idempotent-replayed" not in first.headers
        await client.post(f"{url}/annotate", json={"note": "later"}, headers=owner)
        again = await client.post(f"{url}/solve", headers=keyed)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content and again.headers["ETag"] == first.headers["ETag"]
        # Not solved twice (that would be 409): the row is as the later change left it.
        assert (await client.get(url, headers=owner)).json()["note"] == "later"
        other = await client.post(f"{url}/annotate", json={"note": "x"}, headers=keyed)
        assert other.status_code == 422
