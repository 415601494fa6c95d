"""The help desk's figure (``helpdesk``, issue 21): an agent's ticket list filtered by
status, ``GET /help-desk?assignee_id=<agent>&status=open``, over a tenant holding
``--tickets`` tickets (100,000; quick: 5,000), against the floor app's same statement by
raw psycopg (bench/baseline_app.py), alternating over RATIO_ROUNDS rounds.

The tickets are seeded by one ``INSERT … SELECT generate_series`` (statuses, priorities
and four agents spread evenly; the owner is one of the agents, and lists as them), then
analysed, untimed. The goal is the list's p99 at most 3x the floor's.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
from common import RATIO_ROUNDS, Bench, BenchTenant, Goal, Row, Step, Target, beside_floor, bind, load, step
from reads import alternate

from atrium.platform.tenancy.naming import quote_ident

AGENTS = 4
STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
QUICK_TICKETS, FULL_TICKETS = 5_000, 100_000


def seed_tickets(bench: Bench, tenant: BenchTenant, count: int) -> float:
    """``count`` tickets in ``tenant``'s schema, one agent of four the owner; the seconds it took."""
    started = time.perf_counter()
    agents = [tenant.owner_id, *(uuid.uuid4() for _ in range(AGENTS - 1))]
    with psycopg.connect(bench.url) as conn:
        with conn.transaction():
            bind(conn, tenant.schema)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO users (id, name, email, phone, password) VALUES (%s, %s, %s, '1', 'x')",
                    [(a, f"Agent {i}", f"agent{i}@{tenant.slug}.example") for i, a in enumerate(agents[1:])],
                )
            conn.execute(
                "INSERT INTO tickets (owner_id, subject, body, status, priority, assignee_id, tags)"
                " SELECT %(owner)s, 'Ticket ' || g, 'Something broke, case ' || g,"
                " (%(statuses)s::text[])[1 + g %% 6], (%(priorities)s::text[])[1 + g %% 4],"
                " (%(agents)s::uuid[])[1 + (g / 7) %% 4], ARRAY['bench']"
                " FROM generate_series(1, %(count)s) AS g",
                {
                    "owner": tenant.owner_id,
                    "statuses": list(STATUSES),
                    "priorities": list(PRIORITIES),
                    "agents": agents,
                    "count": count,
                },
            )
        conn.execute(f"ANALYZE {quote_ident(tenant.schema)}.tickets")
    return time.perf_counter() - started


def helpdesk(bench: Bench) -> None:
    args, served = bench.args, bench.served
    assert served is not None
    tenant = bench.tenants[2 % len(bench.tenants)]
    count = args.tickets or (QUICK_TICKETS if args.quick else FULL_TICKETS)
    step(f"helpdesk: seeding {count} tickets in {tenant.schema}")
    seconds = seed_tickets(bench, tenant, count)
    step(f"  seeded in {seconds:.1f} s")
    owner = bench.targets([tenant], lambda _t: "/")[0]
    path = f"/help-desk?assignee_id={tenant.owner_id}&status=open"
    targets = [Target(owner.host, owner.token, path)]
    for port in (served.port, served.floor_port):
        served.check(port, targets[0])
    step(
        f"helpdesk: GET {path.split('?')[0]}?assignee_id=&status=open over {count} tickets against the "
        f"floor's same statement, alternating, {RATIO_ROUNDS} rounds"
    )
    ratio, app_run, floor_run, ratio_rounds = alternate(
        bench, targets, targets, "helpdesk (agent queue by status)", "helpdesk floor (raw psycopg)"
    )
    bench.results["helpdesk"] = {
        "route": "GET /help-desk?assignee_id=&status=open",
        "tickets": count,
        "seed_seconds": round(seconds, 1),
        "p99_vs_floor": round(app_run["p99_ms"] / floor_run["p99_ms"], 2),
        **beside_floor(app_run, floor_run, ratio, ratio_rounds),
    }


def rows(results: dict[str, Any]) -> list[Row]:
    h = results["helpdesk"]
    return [
        (
            f"helpdesk ({h['route']}, {h['tickets']:,} tickets)",
            load(h["app"]),
            f"floor {load(h['floor'])}; ratio {h['ratio']:.2f} (median of rounds "
            f"{', '.join(f'{r:.2f}' for r in h['ratio_rounds'])})",
        )
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    h = results["helpdesk"]
    return [("helpdesk list p99 / floor p99", f"{h['p99_vs_floor']:.2f}", "≤ 3", h["p99_vs_floor"] <= 3)]


STEP = Step("helpdesk", helpdesk, rows, goals, serves=True)
