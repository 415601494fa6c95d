"""bench/run.py --quick runs end to end and reports every figure of issues 5, 17, 18, 19, 20, 21 and 22.

It needs a TCP PostgreSQL server on this machine (``ATRIUM_TEST_DATABASE_URL``: the bench
reads its backends' memory from /proc) and ``wrk``; locally it is skipped without them,
in CI it fails. Only the presence of the figures is checked, never their values: speed
is reported by the bench, not asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.servers import require

ROOT = Path(__file__).resolve().parent.parent

# Spread rounds in CI: each is four wrk runs (~22 s on this machine's slow evenings); the
# figures are the same with one.
SPREAD_ROUNDS = 1

# Every figure issue 5 names, as a path into bench/results/latest.json.
FIGURES = [
    "provision.p50_ms",
    "provision.p95_ms",
    "provision.tenants_per_s",
    "provision.raw_ddl_p50_ms",
    "provision.ratio_p50",
    "provision.bcrypt_ms",
    "migrate_noop.seconds",
    "migrate_noop.cli_seconds",
    "migrate_apply.seconds",
    "migrate_apply.concurrency",
    "migrate_apply.raw_sql_seconds",
    *(
        f"requests.{scenario}.{figure}"
        for scenario in ("get_user", "list_users", "baseline")
        for figure in ("rps", "p50_ms", "p99_ms")
    ),
    "requests.ratio",
    *(f"spread.{run}.{figure}" for run in ("t1", "tn") for figure in ("rps", "p50_ms", "p99_ms")),
    "spread.p99_ratio",
    *(f"spread.rounds.{i}.p99_ratio" for i in range(SPREAD_ROUNDS)),
    *(
        f"spread.{floor}.{run}.{figure}"
        for floor in ("floor", "floor_alone")
        for run in ("t1", "tn")
        for figure in ("rps", "p50_ms", "p99_ms")
    ),
    *(f"spread.{floor}.p99_ratio" for floor in ("floor", "floor_alone")),
    *(
        f"spread.{floor}.rounds.{i}.p99_ratio"
        for floor in ("floor", "floor_alone")
        for i in range(SPREAD_ROUNDS)
    ),
    *(f"spread.light.{run}.{figure}" for run in ("t1", "tn") for figure in ("rps", "p50_ms", "p99_ms")),
    "spread.light.p99_ratio",
    *(f"spread.cold.slices.0.{figure}" for figure in ("at_s", "rps", "p99_ms")),
    *(f"{side}.cold.p99_ratio_first" for side in ("spread", "spread.floor", "spread.floor_alone")),
    "memory.rss_mb_10",
    "memory.rss_mb_n",
    "memory.pg_backend_max_rss_mb",
    # Issue 17: a write and a filtered list, each beside its floor.
    *(
        f"{figure}.{part}"
        for figure in ("write", "filtered_list")
        for part in ("rps", "p50_ms", "p99_ms", "ratio", "floor.rps", "floor.p50_ms", "floor.p99_ms")
    ),
    # Every wrk run's CPU per request, the server's and the database's.
    *(f"write.{side}.{cpu}" for side in ("app", "floor") for cpu in ("cpu_ms", "db_cpu_ms")),
    # The same write beside the contract done by hand (bench/baseline_app.py).
    *(f"write.contract_floor.{part}" for part in ("ratio", "app.rps", "floor.rps", "floor.cpu_ms")),
    # Issue 19: a forum's first page of topics, and 50 concurrent replies, beside raw SQL.
    *(f"forum_topics.{side}.{figure}" for side in ("app", "floor") for figure in ("p50_ms", "p99_ms")),
    *(
        f"forum_replies.{side}.{figure}"
        for side in ("app", "floor")
        for figure in ("p50_ms", "p99_ms", "wall_ms")
    ),
    "forum_replies.reply_count",
    # Issue 22: a form response beside its INSERT, the CSV export, public posts.
    *(
        f"forms.response.{side}.{figure}"
        for side in ("app", "floor", "statement_floor")
        for figure in ("p50_ms", "p99_ms")
    ),
    *(f"forms.response.{side}.{part}_cpu_ms" for side in ("app", "floor") for part in ("server", "db")),
    "forms.response.statement_floor.client_cpu_ms",  # its backend's can round to 0 ticks in 100 inserts
    *(f"forms.response.{ratio}" for ratio in ("p99_ratio", "statement_p99_ratio")),
    *(f"forms.export.{figure}" for figure in ("rows_per_s", "peak_mb", "idle_mb", "floor_rows_per_s")),
    *(f"forms.public_posts.{figure}" for figure in ("addresses", "posts_per_s", "p50_ms", "p99_ms")),
    # Issue 18: a month's occurrences, q over documents, document creation, beside raw SQL.
    *(
        f"calendar_documents.{figure}.{side}.{part}"
        for figure in ("event_occurrences", "document_search", "document_create")
        for side in ("app", "floor")
        for part in ("p50_ms", "p99_ms")
    ),
    # Issue 20: chat delivery (the whole path from the POST; the 201 → frame figure may be
    # 0 when frames beat their 201), messages per second and memory per idle socket.
    *(f"chat.post_to_frame.{figure}" for figure in ("p50_ms", "p99_ms")),
    "chat.sustained_per_s",
    "chat.cpu_ms_per_message",
    "chat.frames",
    "chat.floor.sql_posts_per_s",
]


# Smaller than --quick: one-second wrk runs, ten tenants, one spread round. The test only
# checks that every figure is made, and CI's whole run must stay under 20 minutes.
CI_SIZES = [
    "--tenants", "10", "--spread-tenants", "10", "--duration", "1", "--warmup", "0.5",
    "--spread-warmup", "1", "--spread-rounds", str(SPREAD_ROUNDS),
]  # fmt: skip


def _lookup(data: dict, path: str) -> object:
    value: object = data
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
            continue
        assert isinstance(value, dict) and part in value, f"{path} is missing from the results"
        value = value[part]
    return value


def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    server_url = os.environ.get("ATRIUM_TEST_DATABASE_URL")
    require(
        server_url is not None,
        "the benchmark runs its own server processes against a PostgreSQL server on this machine:"
        " set ATRIUM_TEST_DATABASE_URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres",
    )
    require(shutil.which("wrk") is not None, "wrk (Debian package wrk)")
    assert server_url is not None
    output = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["DATABASE_URL"] = server_url
    if os.environ.get("ATRIUM_TEST_REDIS_URL"):
        env["REDIS_URL"] = os.environ["ATRIUM_TEST_REDIS_URL"]

    done = subprocess.run(
        # Only the figures' presence is checked here: the shortest runs that still make each.
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", *CI_SIZES, "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert done.returncode == 0, f"bench failed:\n{done.stderr[-4000:]}"
    data = json.loads(output.read_text())
    for path in FIGURES:
        value = _lookup(data, path)
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path} = {value!r}"
        assert value > 0, f"{path} = {value!r}"
    # The bench worked in a database of its own and dropped it.
    with psycopg.connect(server_url, autocommit=True) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [data["meta"]["database"]])
        assert left.fetchone() is None
