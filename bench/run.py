"""Atrium's benchmarks (issue 5): provisioning, migrations, requests, spread, memory.

    DATABASE_URL=postgresql://root@127.0.0.1:5432/postgres .venv/bin/python bench/run.py --quick
    DATABASE_URL=... REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/run.py \
        --tenants 10000 --spread-tenants 1000 --duration 10 --record

``DATABASE_URL`` names a PostgreSQL server on this machine (the PostgreSQL memory figure
reads /proc) and a database to administer it from. The script creates a database of its
own there (``atrium_bench_<random>``), works only in it, and drops it at the end, also on
failure, Ctrl-C and SIGTERM. ``REDIS_URL`` (or ``--redis-url``), when set, is given to the
served app. It needs ``wrk`` (Debian package ``wrk``). It prints a table and writes
``bench/results/latest.json`` (or ``--output``); ``--record`` also adds the run to
``bench/RESULTS.md``. Nothing here asserts a speed: the goals are shown, not enforced.

Figures (each with its floor measured in the same run):

- ``provision``: N tenants through ``provision_tenant`` (what ``atrium tenants create``
  runs), one after another, each on a fresh server connection as the CLI has (opened
  untimed; ``--reuse-connection`` keeps one); against the same CREATE statements run as
  plain SQL in one transaction per schema, interleaved with the tenants so both see the
  same catalog and load. bcrypt runs at ``--bcrypt-rounds`` (4); one cost-12 hash is timed apart.
- ``migrate_noop``: ``migrate_tenants`` over N tenants at head, in-process and as the
  real ``atrium tenants migrate`` command (wall time, process start-up included).
- ``migrate_apply``: a throw-away revision (adds a nullable column to ``users``) written
  to a temporary directory, applied to every tenant with ``migrate_tenants(...,
  version_locations=(project versions, tmpdir))``; against the same ALTER and version
  updates as plain SQL, one transaction per schema, at the same concurrency.
- ``requests``: ``atrium serve --workers W`` in a subprocess, loaded by ``wrk`` (bench/targets.lua)
  for a fixed time per scenario after a warm-up; get_user alternates with bench/baseline_app.py (raw psycopg,
  same uvicorn options, same workers) over RATIO_ROUNDS rounds, and the median round is reported).
- ``spread``: ``GET /users/{id}`` over 1 tenant and over T tenants (random tenant per request),
  alternating over ``--spread-rounds`` rounds (the median round is reported), at the usual wrk
  connections (saturating every core), and again with ``LIGHT_CONNECTIONS``; the floor app
  runs the same pairs in each round (``spread.floor``: what spreading one select over T
  schemas costs this machine with no Atrium code), in both shapes: the issue's (a
  transaction with the binding, then the select) and Atrium's own ``GET`` by id (one
  schema-qualified select alone in autocommit, ``spread.floor_alone``). Before the rounds
  each server serves the T tenants for ``--spread-warmup`` seconds, as it has served the one
  tenant by then, so that both sides are compared in their steady state; those seconds are
  measured in 5-s slices and reported as the cold start (``spread.cold``, and ``cold`` of
  each floor).
- ``memory``: the app's resident memory (server and workers, from /proc) after serving 10
  tenants and after serving every tenant; the largest PostgreSQL backend after the spread run.
- ``write``: ``POST /user-groups`` with the owner's token (bench/writes.py), against the
  floor app's INSERT and commit by raw psycopg, alternating over RATIO_ROUNDS rounds.
- ``filtered_list``: ``GET /users?email=`` over a tenant of ``--list-rows`` users
  (bench/lists.py), against the same statement by raw psycopg, alternating likewise.
- ``forum_topics``: the first page of a forum's topics over ``--forum-posts`` posts, and
  50 concurrent replies to one topic with its ``reply_count`` checked exactly afterwards,
  each beside raw SQL (bench/forums.py).
- ``helpdesk``: an agent's tickets by status over ``--tickets`` tickets (bench/helpdesk.py),
  against the same statement by raw psycopg, alternating likewise.
- ``invoices``: ``--finalizes`` invoices finalized by 20 concurrent clients, numbers checked
  gapless and unique, against the same transaction by raw psycopg; a 50-line PDF's p50
  (bench/invoices.py).
- ``forms``: a response to a 50-field form against the floor app's raw INSERT (and the
  INSERT alone, with no HTTP), the streamed CSV export
  of N responses (rows/s, the app's peak memory above idle) against the same rows read by
  raw psycopg, and anonymous public posts from distinct client addresses (bench/forms.py).
- ``chat``: sockets over rooms on two app processes sharing Redis, messages posted at a
  steady rate: delivery delay from the 201 to every member socket's frame, messages/s
  sustained, memory per idle socket, beside raw Redis and raw SQL floors (bench/chats.py).

Each area's figures are a module of bench/ (provisioning.py, migrations.py, reads.py,
spread.py, memory.py, ...), sharing the harness of common.py (the scratch database, the
run's context) and serving.py (servers, wrk). This script parses the arguments, runs the
registered steps (``STEPS``) that ``--only`` selects, in order, prints the table and writes
the results. A new area is one module with a ``Step`` and one line in ``STEPS``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import calendar_documents
import chats
import forms
import forums
import helpdesk
import invoices
import lists
import memory
import provisioning
import psycopg
import reads
import spread
import writes
from common import (
    BENCH_DIR,
    Bench,
    BenchError,
    Goal,
    Row,
    Step,
    console,
    machine_info,
    redact,
    scratch_database,
    step,
)
from rich.console import Console
from rich.table import Table
from serving import Served, Wrk

import migrations
from atrium.platform.settings import to_sqlalchemy_url
from atrium.platform.tenancy.schema_migrations import DEFAULT_CONCURRENCY

DEFAULT_OUTPUT = BENCH_DIR / "results" / "latest.json"
RESULTS_MD = BENCH_DIR / "RESULTS.md"

# Every step, in the order it runs. The app's memory after ten tenants is read before the
# spread and the rest after it; the figures of later areas follow, so that they change
# none of the figures above. A new area: its module's step, one line here.
STEPS: list[Step] = [
    provisioning.STEP,
    migrations.NOOP,
    migrations.APPLY,
    reads.STEP,
    memory.TEN_TENANTS,
    spread.STEP,
    memory.EVERY_TENANT,
    writes.STEP,
    lists.STEP,
    forums.STEP,
    helpdesk.STEP,
    invoices.STEP,
    forms.STEP,
    calendar_documents.STEP,
    chats.STEP,
]
FIGURES = list(dict.fromkeys(s.figure for s in STEPS))


# --- arguments ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Atrium benchmarks (issue 5).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="CI-sized: small N, short runs (< 2 min)")
    parser.add_argument("--tenants", type=int, help="N: tenants provisioned and migrated (full: 1000)")
    parser.add_argument("--spread-tenants", type=int, help="T of the spread figure (full: 1000, quick: 20)")
    parser.add_argument("--duration", type=float, help="seconds of each wrk run (full: 10, quick: 2)")
    parser.add_argument("--warmup", type=float, help="seconds of unmeasured load before each run")
    parser.add_argument(
        "--spread-warmup",
        type=float,
        help="seconds of load over the T tenants before the spread rounds, measured as the cold"
        " start (full: 60, quick: 2)",
    )
    parser.add_argument(
        "--spread-rounds",
        type=int,
        help="alternating 1-tenant / T-tenant rounds of the spread figure; the median is reported"
        " (full: 5, quick: 3)",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server worker processes")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--bcrypt-rounds", type=int, default=4, help="bcrypt cost while provisioning")
    parser.add_argument(
        "--reuse-connection",
        action="store_true",
        help="provision every tenant on one pooled connection instead of a fresh one each (as the CLI)",
    )
    parser.add_argument(
        "--raw-samples", type=int, help="schemas created by plain DDL for the floor (default min(N, 200))"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="migrate_tenants concurrency for migrate_apply (the CLI default)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or None,
        help="REDIS_URL given to the served app (default: $REDIS_URL; none: in-process stores)",
    )
    parser.add_argument(
        "--list-rows", type=int, help="users in the filtered_list figure's tenant (full: 100000, quick: 5000)"
    )
    parser.add_argument(
        "--forum-posts", type=int, help="posts in the forum_topics figure's forum (full: 50000, quick: 2000)"
    )
    parser.add_argument(
        "--tickets", type=int, help="tickets in the helpdesk figure's tenant (full: 100000, quick: 5000)"
    )
    parser.add_argument("--chat-sockets", type=int, help="sockets of the chat figure (full: 200, quick: 40)")
    parser.add_argument("--chat-rooms", type=int, help="rooms of the chat figure (full: 20, quick: 4)")
    parser.add_argument(
        "--chat-rate", type=float, help="messages per second of the chat figure (full: 100, quick: 20)"
    )
    parser.add_argument(
        "--finalizes", type=int, help="invoices finalized by 20 concurrent clients (full: 200, quick: 60)"
    )
    parser.add_argument(
        "--idempotency-key",
        choices=("auto", "on", "off"),
        default="auto",
        help="send an Idempotency-Key with each write: auto when the app replays a repeated key",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON results go")
    parser.add_argument("--record", action="store_true", help="append this run to bench/RESULTS.md")
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        default=None,
        help="comma-separated figures to run (and those they need; provision always runs): "
        + ", ".join(FIGURES),
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.tenants = args.tenants or (20 if quick else 1000)
    args.spread_tenants = args.spread_tenants or (20 if quick else 1000)
    args.duration = args.duration or (2.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    args.raw_samples = args.raw_samples or min(args.tenants, 200)
    args.list_rows = args.list_rows or (5000 if quick else 100_000)
    args.forum_posts = args.forum_posts or (2000 if quick else 50_000)
    args.chat_sockets = args.chat_sockets or (40 if quick else 200)
    args.chat_rooms = args.chat_rooms or (4 if quick else 20)
    args.chat_rate = args.chat_rate or (20.0 if quick else 100.0)
    # The first round always meets the backends' first contacts with the T tenants, and one
    # burst of outside load spoils any round: with 3 rounds those two decide the median; 5
    # leave it to a clean round (bench/RESULTS.md, sixth pass).
    args.spread_rounds = args.spread_rounds or (3 if quick else 5)
    if args.spread_warmup is None:
        args.spread_warmup = 2.0 if quick else 60.0
    if args.spread_rounds < 1:
        parser.error("--spread-rounds must be at least 1")
    if args.tenants < 10:
        parser.error("--tenants must be at least 10 (the memory figure serves 10 tenants)")
    if not 1 <= args.spread_tenants <= args.tenants:
        parser.error("--spread-tenants must be between 1 and --tenants")
    if not 4 <= args.bcrypt_rounds <= 31:
        parser.error("--bcrypt-rounds must be between 4 and 31")
    if args.duration <= 0 or args.warmup < 0 or args.workers < 1 or args.connections < 1:
        parser.error("--duration, --workers and --connections must be positive")
    if args.only is not None and (unknown := sorted(set(args.only) - set(FIGURES))):
        parser.error(f"--only: no figures {', '.join(unknown)}; there are {', '.join(FIGURES)}")
    return args


# --- running the steps ---------------------------------------------------------------------


def selected(only: list[str] | None) -> list[Step]:
    """The steps of the figures ``only`` names and of those they need, in ``STEPS`` order."""
    if only is None:
        return list(STEPS)
    wanted, todo = {"provision"}, list(only)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(r for s in STEPS if s.figure == name for r in s.requires)
    return [s for s in STEPS if s.figure in wanted]


def run_steps(bench: Bench, steps: list[Step]) -> None:
    """Each step in turn; the apps are served for every run of serving steps."""
    try:
        for item in steps:
            if item.serves and bench.served is None:
                bench.served = Served(bench)
                bench.served.start()
            elif not item.serves and bench.served is not None:
                bench.served.stop()
                bench.served = None
            item.run(bench)
    except BenchError as exc:
        if bench.served is not None:
            raise BenchError(f"{exc}\nserver log:\n{bench.served.problems()}") from None
        raise
    finally:
        if bench.served is not None:
            bench.served.stop()
            bench.served = None


# --- goals, table, files -----------------------------------------------------------------


def _reported(results: dict[str, Any]) -> list[Step]:
    return [s for s in STEPS if s.figure in results]


def goals(results: dict[str, Any]) -> list[Goal]:
    """(figure, measured, goal, met) rows."""
    return [row for s in _reported(results) for row in s.goals(results)]


def figure_rows(results: dict[str, Any]) -> list[Row]:
    """(figure, value, floor / more) rows of the main table."""
    return [row for s in _reported(results) for row in s.rows(results)]


def print_table(results: dict[str, Any]) -> None:
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    table = Table(title="Atrium benchmarks", show_lines=False)
    for column in ("figure", "value", "floor / more"):
        table.add_column(column, overflow="fold")
    for row in figure_rows(results):
        table.add_row(*row)
    out.print(table)
    goal_table = Table(title="Goals (shown, not enforced)")
    for column in ("figure", "measured", "goal", "met"):
        goal_table.add_column(column)
    for figure, measured, goal, met in goals(results):
        verdict = "—" if met is None else "[green]yes[/]" if met else "[red]no[/]"
        goal_table.add_row(figure, measured, goal, verdict)
    out.print(goal_table)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        f"## {meta['date'][:10]}: {meta['mode']} run, {meta['args']['tenants']} tenants",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gb']} GB memory, "
        f"Linux {machine['kernel']}, Python {machine['python']}; PostgreSQL {meta['postgres']['version']} "
        f"({', '.join(f'{k} {v}' for k, v in meta['postgres']['settings'].items())}); "
        f"app served with Redis: {'yes' if meta['args']['redis_url'] else 'no'}. "
        f"Total wall time {meta['seconds']:.0f} s; load average (1, 5, 15 min) at start "
        f"{meta['loadavg_start']}, at end {meta['loadavg_end']}.",
        "",
        "| figure | value | floor / more |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in figure_rows(results)),
        "",
        "| goal | measured | target | met |",
        "|---|---|---|---|",
        *(
            f"| {a} | {b} | {c} | {'—' if m is None else 'yes' if m else '**no**'} |"
            for a, b, c, m in goals(results)
        ),
        "",
    ]
    return "\n".join(lines)


def postgres_meta(url: str) -> dict[str, Any]:
    names = ("shared_buffers", "fsync", "synchronous_commit", "autovacuum", "max_connections")
    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [list(names)]
            ).fetchall()
        )
        buffers = conn.execute("SHOW shared_buffers").fetchone()
    if buffers:
        settings["shared_buffers"] = buffers[0]
    return {
        "version": version[0] if version else "?",
        "settings": {k: settings[k] for k in names if k in settings},
    }


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tmp.replace(path)


def record(results: dict[str, Any]) -> None:
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    marker = "<!-- runs: newest first -->"
    section = markdown(results)
    if marker in text:
        text = text.replace(marker, f"{marker}\n\n{section}", 1)
    else:
        text = text.rstrip("\n") + f"\n\n{marker}\n\n{section}"
    RESULTS_MD.write_text(text)


# --- main --------------------------------------------------------------------------------


def _sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_url = os.environ.get("DATABASE_URL", "").strip()
    if not server_url:
        console.print("DATABASE_URL is not set (e.g. postgresql://root@127.0.0.1:5432/postgres)")
        return 2
    to_sqlalchemy_url(server_url)  # validates
    signal.signal(signal.SIGTERM, _sigterm)
    # Ctrl-C must clean up even when started in the background (which ignores SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="atrium-bench-"))
    command = (
        f"DATABASE_URL={redact(server_url)} "
        + (f"REDIS_URL={redact(args.redis_url)} " if args.redis_url else "")
        + "python bench/run.py "
        + shlex.join(sys.argv[1:])
    )
    try:
        wrk = Wrk(args, workdir)
        with scratch_database(server_url) as (db_name, url):
            step(f"working in database {db_name}")
            bench = Bench(args, db_name, url, workdir, wrk)
            try:
                run_steps(bench, selected(args.only))
            finally:
                bench.close()
            results = {
                "meta": {
                    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                    "mode": "quick" if args.quick else "full",
                    "command": command,
                    "database": db_name,
                    "machine": machine_info(),
                    "postgres": postgres_meta(url),
                    "args": {
                        k: (str(v) if isinstance(v, Path) else redact(v) if k == "redis_url" and v else v)
                        for k, v in vars(args).items()
                    },
                    "loadavg_start": load_start,
                    "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                },
                **bench.results,
            }
    except BenchError as exc:
        console.print(f"[red]bench: {exc}[/]")
        return 1
    except KeyboardInterrupt:
        console.print("[red]bench: interrupted[/]")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    write_results(args.output, results)
    print_table(results)
    step(f"wrote {args.output} ({results['meta']['seconds']:.0f} s in all)")
    if args.record:
        record(results)
        step(f"appended this run to {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
