"""Randomized, concurrent create / read / update / delete / list across three tenants.

A Hypothesis state machine drives random batches of operations against one app: three
fresh tenants per example, each with its owner and an Admin user, and a model of every
row each tenant holds (seeded from what the tenant lists at the start). A batch of up to
``ATRIUM_STATEFUL_BATCH`` operations runs at once (``asyncio.gather`` on one client, so
requests of different tenants interleave inside the app and share its connection pool);
within one tenant a batch holds either one write or only reads, so the expected outcome
of every operation is exact. Besides each tenant's own work, operations cross tenants: a
user of one tenant asks for, changes or deletes another tenant's row (404), or sends its
token to another tenant's host (401).

It fails when a row shows up in the wrong tenant, is lost, or changes without a request
that changed it; when a create, update or delete does not do exactly what was sent (the
foreign-key rules of the tenant models, CASCADE, SET NULL or RESTRICT, included); when
a list is not newest first (or oldest first, where API.md says so); and, through
``tests/api.py``'s response hook, on any 500, non-problem error or leaked password.

The resources and their operations come from the app's route table and rows are made
with ``tests/api.py``'s ``FACTORIES``, so a new route is covered as soon as it has a
factory (and the test fails until it has one).

Bounds (CI defaults): ``ATRIUM_STATEFUL_EXAMPLES`` (20) examples of
``ATRIUM_STATEFUL_STEPS`` (25) steps, batches of up to ``ATRIUM_STATEFUL_BATCH`` (6)
operations. A failure prints its sequence of batches; ``ATRIUM_STATEFUL_SHRINK=1`` shrinks it
first (each example starts from fresh tenants, so replays are exact, but slow).

Async from a synchronous machine: every coroutine runs on the module's ``portal`` (an
anyio event loop in a helper thread, see ``conftest.py``), never on pytest-asyncio's
session loop. The app's lifespan is entered and left on that loop by
``portal.wrap_async_context_manager``; each step hands the portal one coroutine
(``portal.call``), which gathers the batch's requests on that one loop.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
from anyio.from_thread import BlockingPortal
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from litestar import Litestar
from sqlalchemy import Engine

from atrium.platform.settings import Settings
from atrium.tenants.areas import resource_specs
from atrium.tenants.models import TenantBase, TenantTable, tenant_metadata
from tests.api import (
    DERIVED_FIELDS,
    FACTORIES,
    MOVES_ON_CHANGE,
    OLDEST_FIRST,
    UPDATES,
    Headers,
    add_user,
    comparable,
    list_all,
    new_tenant,
    serve_api,
    tenant_endpoints,
)
from tests.conftest import MadeTenant, login_owner

EXAMPLES = int(os.environ.get("ATRIUM_STATEFUL_EXAMPLES", "20"))
STEPS = int(os.environ.get("ATRIUM_STATEFUL_STEPS", "25"))
BATCH = int(os.environ.get("ATRIUM_STATEFUL_BATCH", "6"))
# Shrinking replays sequences on fresh tenants and may take Hypothesis' five-minute
# shrink budget: off unless asked for (the unshrunk failing sequence is printed anyway).
SHRINK = bool(os.environ.get("ATRIUM_STATEFUL_SHRINK"))
TENANTS = 3
WRITES = {"create", "update", "delete"}
FOREIGN = {"foreign-get", "foreign-update", "foreign-delete", "foreign-content", "foreign-token"}
# Ids listed in an array column, with no foreign key: (child, column, parent). A deleted
# parent leaves the lists it was in, and moves those rows' updated_at to a time the model
# learns only by reading them back (``MOVED``).
LISTED_IDS = (("documents", "media_ids", "media"),)
MOVED = "moved"
Row = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# What the route table and the models say
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForeignKey:
    """``child.column`` references a row of ``parent`` with this ``ON DELETE`` rule."""

    child: str  # resource
    column: str
    parent: str  # resource
    on_delete: str  # CASCADE, SET NULL, RESTRICT or NO ACTION


@dataclass(frozen=True)
class Routes:
    ops: dict[str, frozenset[str]]  # resource → its operations (list, create, get, …)
    foreign_keys: tuple[ForeignKey, ...]

    def with_op(self, op: str) -> list[str]:
        return sorted(r for r, ops in self.ops.items() if op in ops)


def discover(app: Litestar) -> Routes:
    ops: dict[str, set[str]] = {}
    for endpoint in tenant_endpoints(app):
        assert endpoint.op, f"{endpoint}: a route shape this test does not know"
        ops.setdefault(endpoint.resource, set()).add(endpoint.op)
    missing = sorted(r for r in ops if r not in FACTORIES)
    assert not missing, f"no factory in tests/api.py for {missing}: the machine cannot make their rows"
    missing = sorted(r for r, o in ops.items() if "update" in o and r not in UPDATES)
    assert not missing, f"no update body in tests/api.py for {missing}"
    # A resource's table, by its service's model (``help-desk`` rows live in ``tickets``).
    resource_of = {r.replace("-", "_"): r for r in ops}
    resource_of |= {spec.service.model.__tablename__: spec.resource for spec in resource_specs()}
    # Tables of TenantTable but not TenantBase are internal (idempotency keys): no route
    # serves them, and the machine neither makes nor checks their rows.
    mappers = TenantTable.registry.mappers
    internal = {m.local_table.name for m in mappers if not issubclass(m.class_, TenantBase)}
    keys = []
    for table in tenant_metadata.sorted_tables:
        if table.name in internal:
            continue
        # Rows below a resource's row (a ticket's replies), deleted with it: served under
        # that row's path, never made by the machine, nothing to model.
        if table.name not in resource_of and any(
            (k.ondelete or "").upper() == "CASCADE" and k.column.table.name in resource_of
            for k in table.foreign_keys
        ):
            continue
        for key in table.foreign_keys:
            child, parent = resource_of.get(table.name), resource_of.get(key.column.table.name)
            assert child and parent, f"table {table.name} → {key.column.table.name}: no route serves it"
            keys.append(ForeignKey(child, key.parent.name, parent, (key.ondelete or "NO ACTION").upper()))
    return Routes({r: frozenset(o) for r, o in ops.items()}, tuple(keys))


# ---------------------------------------------------------------------------------------------
# The world (module fixture) and one tenant's model
# ---------------------------------------------------------------------------------------------


@dataclass
class World:
    portal: BlockingPortal
    app: Litestar
    client: httpx.AsyncClient
    operator_engine: Engine
    routes: Routes


@pytest.fixture(scope="module")
def world(settings: Settings, operator_engine: Engine, portal: BlockingPortal) -> Iterator[World]:
    with portal.wrap_async_context_manager(serve_api(settings)) as (app, client):
        yield World(portal, app, client, operator_engine, discover(app))


@dataclass
class TenantModel:
    made: MadeTenant
    users: list[Headers]  # the owner's and the Admin's headers
    # resource → id → the row as the API shows it. Rows are drawn in the order the model
    # learned them (never sorted by id: ids are random, and Hypothesis must draw the same
    # rows when it replays a sequence of steps on fresh tenants).
    rows: dict[str, dict[str, Row]]
    protected: set[str]  # rows from before the machine: read, never changed or deleted
    content: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # media id → bytes, type

    def all_ids(self) -> set[str]:
        return {i for rows in self.rows.values() for i in rows}

    def changeable(self, resource: str) -> list[str]:
        return [i for i in self.rows[resource] if i not in self.protected]


@dataclass(frozen=True)
class Op:
    kind: str
    tenant: int  # whose user acts, on whose host (for foreign-token: whose token)
    user: int  # 0 owner, 1 Admin
    resource: str
    row: str | None = None
    other: int | None = None  # the tenant whose row or host a foreign operation aims at


def _tagged(value: Any, tag: str) -> Any:
    """A unique variant of an UPDATES value, so every change is distinguishable."""
    if isinstance(value, str):
        return f"{value} {tag}"
    if isinstance(value, dict):
        return {**value, "tag": tag}
    return value


def _when(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value)


def _describe(op: Op, outcome: Any) -> str:
    """``tenant 0 admin update /users/<id> → 200`` (for Hypothesis' report of a failing run)."""
    response = outcome[1] if isinstance(outcome, tuple) and len(outcome) == 2 else outcome
    if isinstance(response, BaseException):
        status: Any = f"{type(response).__name__}: {str(response)[:200]}"
    else:
        status = response.status_code if isinstance(response, httpx.Response) else "ok"
    target = f"/{op.resource}" + (f"/{op.row}" if op.row else "")
    aim = f" (tenant {op.other}'s)" if op.other is not None else ""
    return f"tenant {op.tenant} {['owner', 'admin'][op.user]} {op.kind} {target}{aim} → {status}"


def _expect(response: httpx.Response, status: int, op: Op) -> None:
    assert response.status_code == status, (
        f"{op}: {response.request.method} {response.request.url.path} → {response.status_code}, "
        f"expected {status}: {response.text[:300]}"
    )


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------


class Interleaving(RuleBasedStateMachine):
    world: World  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.tenants = [self._call(self._provision) for _ in range(TENANTS)]
        self.writes_since_audit = 0

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, function: Any, *args: Any) -> Any:
        return self.world.portal.call(function, *args)

    async def _provision(self) -> TenantModel:
        client = self.world.client
        made = new_tenant(self.world.operator_engine, "st")
        owner = await login_owner(client, made)
        admin = await add_user(client, owner, role="Admin")
        rows = {r: await self._listed(owner, r) for r in self.world.routes.with_op("list")}
        model = TenantModel(made, [owner, admin.headers], rows, set())
        model.protected = model.all_ids()
        return model

    async def _listed(self, headers: Headers, resource: str) -> dict[str, Row]:
        items = await list_all(self.world.client, headers, resource)
        order = [(_when(i["created_at"]), i["id"]) for i in items]
        if resource in OLDEST_FIRST:
            assert order == sorted(order), f"/{resource} is not listed oldest first"
        else:
            assert order == sorted(order, reverse=True), f"/{resource} is not listed newest first"
        rows = {i["id"]: i for i in items}
        assert len(rows) == len(items), f"/{resource} lists a row twice"
        return rows

    # -- drawing a batch ----------------------------------------------------------------------

    def _draw_op(self, data: st.DataObject) -> Op | None:
        routes = self.world.routes
        tenant = data.draw(st.integers(0, TENANTS - 1), label="tenant")
        user = data.draw(st.integers(0, 1), label="user")
        kind = data.draw(
            st.sampled_from(["list", "get", "content", "create", "update", "delete", *sorted(FOREIGN)]),
            label="kind",
        )
        model = self.tenants[tenant]
        if kind in {"list", "create"}:
            resources = routes.with_op(kind)
            if not resources:
                return None
            return Op(kind, tenant, user, data.draw(st.sampled_from(resources), label="resource"))
        if kind == "foreign-token":
            other = data.draw(st.sampled_from([t for t in range(TENANTS) if t != tenant]), label="other")
            resource = data.draw(st.sampled_from(routes.with_op("list")), label="resource")
            return Op(kind, tenant, user, resource, other=other)
        aim, other = model, None
        if kind in FOREIGN:
            other = data.draw(st.sampled_from([t for t in range(TENANTS) if t != tenant]), label="other")
            aim = self.tenants[other]
        op_name = kind.removeprefix("foreign-")
        if op_name == "content":
            candidates = [
                (r, i) for r in routes.with_op("content") for i in aim.rows.get(r, {}) if i in aim.content
            ]
        else:
            candidates = [
                (r, i)
                for r in routes.with_op(op_name)
                for i in (aim.changeable(r) if kind in {"update", "delete"} else list(aim.rows.get(r, {})))
            ]
        if not candidates:
            return None
        resource, row = data.draw(st.sampled_from(candidates), label="row")
        return Op(kind, tenant, user, resource, row, other)

    @staticmethod
    def _conflicts(op: Op, chosen: list[Op]) -> bool:
        """Within one tenant, a write runs alone; foreign operations change nothing anywhere."""
        if op.kind in FOREIGN:
            return False
        same = [o for o in chosen if o.tenant == op.tenant and o.kind not in FOREIGN]
        return bool(same) and (op.kind in WRITES or any(o.kind in WRITES for o in same))

    @rule(data=st.data())
    def batch(self, data: st.DataObject) -> None:
        size = data.draw(st.integers(2, max(2, BATCH)), label="batch size")
        chosen: list[Op] = []
        for _ in range(size):
            op = self._draw_op(data)
            if op is not None and not self._conflicts(op, chosen):
                chosen.append(op)
        outcomes = self._call(self._run_batch, chosen)
        hypothesis.note(
            "batch: " + "; ".join(_describe(op, o) for op, o in zip(chosen, outcomes, strict=True))
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        for op, outcome in zip(chosen, outcomes, strict=True):
            self._check(op, outcome)
        self.writes_since_audit += sum(op.kind in WRITES for op in chosen)

    async def _run_batch(self, ops: list[Op]) -> list[Any]:
        # Every operation runs to its end (none is left running into the next step), then
        # the first error, if any, is raised by ``batch``.
        return list(await asyncio.gather(*(self._run(op) for op in ops), return_exceptions=True))

    # -- running one operation (on the portal's loop) ---------------------------------------

    async def _run(self, op: Op) -> Any:
        client = self.world.client
        model = self.tenants[op.tenant]
        headers = model.users[op.user]
        if op.kind == "list":
            return await self._listed(headers, op.resource)
        if op.kind == "create":
            return await self._create(headers, op.resource)
        if op.kind == "foreign-token":
            foreign_host = {**headers, "Host": self.tenants[op.other].made.host}
            return await client.get(f"/{op.resource}", headers=foreign_host)
        path = f"/{op.resource}/{op.row}"
        name = op.kind.removeprefix("foreign-")
        if name == "get":
            return await client.get(path, headers=headers)
        if name == "content":
            return await client.get(f"{path}/content", headers=headers)
        if name == "delete":
            return await client.delete(path, headers=headers)
        change = {k: _tagged(v, uuid.uuid4().hex[:8]) for k, v in UPDATES[op.resource].items()}
        return change, await client.patch(path, json=change, headers=headers)

    async def _create(self, headers: Headers, resource: str) -> tuple[str, dict[str, Any], dict[str, Row]]:
        """A new row made by the factory, and every row the factory made for it, as read back."""
        context: dict[str, Any] = {}
        row_id = await FACTORIES[resource](self.world.client, headers, context)
        made: dict[str, Row] = {}
        readable = self.world.routes.with_op("get")
        for made_id in context:
            for candidate in [resource, *readable] if made_id == row_id else readable:
                response = await self.world.client.get(f"/{candidate}/{made_id}", headers=headers)
                if response.status_code == 200:
                    made[made_id] = {"resource": candidate, **response.json()}
                    break
            assert made_id in made, f"row {made_id} made for /{resource} cannot be read back"
        return row_id, context, made

    # -- checking an outcome against the model (back on the test's thread) --------------------

    def _check(self, op: Op, outcome: Any) -> None:
        model = self.tenants[op.tenant]
        if op.kind == "list":
            self._check_rows(model, op.resource, outcome)
        elif op.kind == "create":
            self._check_create(model, *outcome)
        elif op.kind == "foreign-token":
            _expect(outcome, 401, op)
        elif op.kind in FOREIGN:
            _expect(outcome[1] if op.kind == "foreign-update" else outcome, 404, op)
        elif op.kind == "get":
            _expect(outcome, 200, op)
            expected = comparable(op.resource, model.rows[op.resource][op.row])
            assert comparable(op.resource, outcome.json()) == expected, f"{op}: the row changed"
        elif op.kind == "content":
            _expect(outcome, 200, op)
            data, media_type = model.content[op.row]
            assert outcome.content == data, f"{op}: other bytes"
            assert outcome.headers["content-type"] == media_type, f"{op}: another type"
        elif op.kind == "update":
            self._check_update(model, op, *outcome)
        else:
            self._check_delete(model, op, outcome)

    def _check_rows(self, model: TenantModel, resource: str, listed: dict[str, Row]) -> None:
        expected = model.rows[resource]
        strangers = set(listed) - set(expected)
        owners = {i: t.made.slug for t in self.tenants if t is not model for i in strangers & t.all_ids()}
        assert not strangers, (
            f"{model.made.slug} lists /{resource} rows it does not hold: {sorted(strangers)} "
            f"(of other tenants: {owners})"
        )
        lost = set(expected) - set(listed)
        assert not lost, f"{model.made.slug} lost /{resource} rows {sorted(lost)}"
        for row_id, row in listed.items():
            moved = expected[row_id].get("updated_at") == MOVED
            unknown = {"updated_at"} if moved else set()

            def known(fields: Row, unknown: set[str] = unknown) -> Row:
                return {k: v for k, v in comparable(resource, fields).items() if k not in unknown}

            assert known(row) == known(expected[row_id]), (
                f"{model.made.slug} /{resource}/{row_id} changed: {expected[row_id]} → {row}"
            )
            if moved:
                expected[row_id] = row  # its new time, now known

    def _check_create(
        self, model: TenantModel, row_id: str, context: dict[str, Any], made: dict[str, Row]
    ) -> None:
        everywhere = {i for t in self.tenants for i in t.all_ids()}
        for made_id, row in made.items():
            resource = row.pop("resource")
            assert made_id not in everywhere, f"a new /{resource} row has an id already in use: {made_id}"
            sent = context[made_id]
            for name, value in sent.get("json", {}).items():
                if name == "password":
                    assert name not in row, f"/{resource} shows the password"
                elif name == "permissions":
                    assert row[name] == sorted(set(value)), f"/{resource}/{made_id}: {name} {row[name]}"
                elif value is not None:
                    assert row[name] == value, (
                        f"/{resource}/{made_id}: {name} is {row[name]!r}, sent {value!r}"
                    )
            if "files" in sent:
                filename, data, media_type = sent["files"]["file"]
                assert (row["name"], row["size"], row["type"]) == (filename, len(data), media_type), row
                model.content[made_id] = (data, media_type)
            model.rows[resource][made_id] = row

    def _check_update(
        self, model: TenantModel, op: Op, change: dict[str, Any], response: httpx.Response
    ) -> None:
        _expect(response, 200, op)
        before, after = model.rows[op.resource][op.row], response.json()
        for name, value in after.items():
            if name in change:
                assert value == change[name], f"{op}: {name} is {value!r}, sent {change[name]!r}"
            elif name == "updated_at":
                if before[name] != MOVED:
                    assert _when(value) > _when(before[name]), f"{op}: updated_at did not move"
            elif name in DERIVED_FIELDS.get(op.resource, ()):
                continue
            elif name in MOVES_ON_CHANGE.get(op.resource, ()):
                assert value != before[name], f"{op}: {name} did not move"
            else:
                assert value == before[name], f"{op}: {name} changed from {before[name]!r} to {value!r}"
        model.rows[op.resource][op.row] = after

    def _dependents(
        self, model: TenantModel, resource: str, row_id: str, rule: set[str]
    ) -> list[tuple[ForeignKey, str]]:
        return [
            (key, child_id)
            for key in self.world.routes.foreign_keys
            if key.parent == resource and key.on_delete in rule
            for child_id, child in model.rows.get(key.child, {}).items()
            if child.get(key.column) == row_id
        ]

    def _check_delete(self, model: TenantModel, op: Op, response: httpx.Response) -> None:
        if self._dependents(model, op.resource, op.row, {"RESTRICT", "NO ACTION"}):
            _expect(response, 409, op)  # still referenced: nothing changes
            return
        _expect(response, 204, op)
        self._forget(model, op.resource, op.row)

    def _forget(self, model: TenantModel, resource: str, row_id: str) -> None:
        """The row is gone: apply the ON DELETE rules of the rows that referenced it."""
        for key, child_id in self._dependents(model, resource, row_id, {"SET NULL"}):
            model.rows[key.child][child_id] = {**model.rows[key.child][child_id], key.column: None}
        for key, child_id in self._dependents(model, resource, row_id, {"CASCADE"}):
            if child_id in model.rows[key.child]:
                self._forget(model, key.child, child_id)
        for child, column, parent in LISTED_IDS:
            for child_id, row in model.rows.get(child, {}).items() if parent == resource else ():
                if row_id in row[column]:
                    left = [i for i in row[column] if i != row_id]
                    model.rows[child][child_id] = {**row, column: left, "updated_at": MOVED}
        del model.rows[resource][row_id]
        model.content.pop(row_id, None)

    # -- audits ----------------------------------------------------------------------------------

    async def _list_everything(self) -> list[tuple[TenantModel, str, dict[str, Row]]]:
        work = [(m, r) for m in self.tenants for r in self.world.routes.with_op("list")]
        listed = await asyncio.gather(*(self._listed(m.users[0], r) for m, r in work))
        return [(m, r, rows) for (m, r), rows in zip(work, listed, strict=True)]

    def audit(self) -> None:
        """Every tenant lists exactly the rows of its model, unchanged."""
        for model, resource, listed in self._call(self._list_everything):
            self._check_rows(model, resource, listed)
        self.writes_since_audit = 0

    @precondition(lambda self: self.writes_since_audit >= 3)
    @rule()
    def audit_everything(self) -> None:
        self.audit()

    def teardown(self) -> None:
        self.audit()


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_random_interleavings_keep_every_tenant_whole_and_apart(world: World) -> None:
    Interleaving.world = world
    run_state_machine_as_test(
        Interleaving,
        settings=hypothesis.settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            phases=[
                p
                for p in hypothesis.Phase
                if SHRINK or p not in {hypothesis.Phase.shrink, hypothesis.Phase.explain}
            ],
            print_blob=True,
        ),
    )


@pytest.mark.parametrize("tampering", ["lost", "foreign", "changed"])
def test_the_audit_sees_a_lost_foreign_or_changed_row(world: World, tampering: str) -> None:
    """The model check is not vacuous: it fails when the model and the tenants disagree."""
    Interleaving.world = world
    machine = Interleaving()
    first, second = machine.tenants[0], machine.tenants[1]
    machine.audit()  # agrees at the start
    rows = first.rows["users"]
    row_id = sorted(rows)[0]
    if tampering == "lost":  # a row the tenant has but the model does not: as if it came from elsewhere
        del rows[row_id]
    elif tampering == "foreign":  # the model puts a row of one tenant into another
        second.rows["users"][row_id] = rows.pop(row_id)
    else:
        rows[row_id] = {**rows[row_id], "name": "changed behind the API's back"}
    with pytest.raises(AssertionError):
        machine.audit()
