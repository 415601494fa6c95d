"""The bench's shared harness: the scratch database, the run's context, helpers and the
shape of a figure (``Step``). Servers and wrk are in serving.py; each area's figures are
a module of their own (run.py lists them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy.engine import make_url

from atrium.platform.db.engines import create_operator_engine
from atrium.platform.security.passwords import hash_password
from atrium.platform.security.tokens import TokenAuth
from atrium.platform.settings import Settings
from atrium.platform.tenancy.naming import quote_ident

if TYPE_CHECKING:
    from serving import Served, Wrk
    from sqlalchemy.engine import Engine

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# Alternating app / floor rounds of the request ratios, and 1-tenant / T-tenant rounds of
# the spread ratio (the median round of each is reported).
RATIO_ROUNDS = 3

console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# --- helpers -----------------------------------------------------------------------------


def ms(seconds: float) -> float:
    return seconds * 1000.0


def beside_floor(
    app_run: dict[str, Any], floor_run: dict[str, Any], ratio: float, ratio_rounds: list[float]
) -> dict[str, Any]:
    """A figure's runs against its floor, in the keys every such figure reports.

    ``cpu_ratio`` (the floor's server CPU per request over the app's, in the same round)
    reads what the rate ratio reads on a quiet machine, but moves far less with outside
    load: time the servers were not run is not counted (serving.py)."""
    cpus = app_run.get("cpu_ms"), floor_run.get("cpu_ms")
    return {
        "app": app_run,
        "floor": floor_run,
        "rps": app_run["rps"],
        "p50_ms": app_run["p50_ms"],
        "p99_ms": app_run["p99_ms"],
        "ratio": round(ratio, 2),
        "ratio_rounds": ratio_rounds,
        "cpu_ratio": round(cpus[1] / cpus[0], 2) if all(cpus) else None,
    }


def bind(conn: Any, schema: str) -> Any:
    """Bind a raw psycopg transaction (sync or async) to ``schema``, as the seeds and floors
    do: ``conn.execute``'s result (a cursor, or a coroutine of one)."""
    return conn.execute("SELECT set_config('search_path', %s, true)", [quote_ident(schema)])


def percentile(values: list[float], pct: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(pct) - 1]


def latency_summary(latencies: list[float]) -> dict[str, Any]:
    """The count, p50 and p99 (ms) of request latencies given in seconds."""
    return {
        "requests": len(latencies),
        "p50_ms": round(ms(statistics.median(latencies)), 2),
        "p99_ms": round(ms(percentile(latencies, 99)), 2),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def atrium_command() -> list[str]:
    """The installed ``atrium`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("atrium")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("atrium")
    return [found] if found else [sys.executable, "-m", "atrium.scripts"]


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def step(message: str) -> None:
    console.print(f"[bold]{time.strftime('%H:%M:%S')}[/] {message}")


def progress_bar() -> Progress:
    return Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


# --- /proc -------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """The kB fields of /proc/<pid>/status (VmRSS, RssAnon, ...); empty if unreadable."""
    fields: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return fields


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User and system CPU seconds of ``root`` and its descendants so far (/proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(root):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def tree_rss_mb(root: int) -> tuple[float, dict[int, float]]:
    per = {pid: proc_status(pid).get("VmRSS", 0) / 1024 for pid in process_tree(root)}
    return sum(per.values()), per


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


# --- the scratch database ----------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[tuple[str, str]]:
    """A new database on the server; dropped afterwards, whatever happens."""
    name = f"atrium_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(server_url).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name, make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        try:
            step(f"dropping database {name}")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            signal.signal(signal.SIGINT, previous)


# --- what a figure is ----------------------------------------------------------------------

# (figure, value, floor / more): a row of the main table.
Row = tuple[str, str, str]
# (figure, measured, goal, met): a row of the goals table; ``met`` None for a figure shown
# beside a goal but not one itself.
Goal = tuple[str, str, str, bool | None]


def no_rows(_results: dict[str, Any]) -> list[Any]:
    return []


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the bench, run in the order run.py registers it.

    ``figure`` names the results key the step fills and the name ``--only`` selects it by;
    a figure measured in two steps (memory: before and after the spread) has two steps of
    the same name. ``rows`` and ``goals`` read ``results[figure]`` once every step has run
    (give them to one step of a figure). ``serves``: the step loads the served app and the
    floor app (``bench.served``), started once for every such step in a row.
    """

    figure: str
    run: Callable[[Bench], None]
    rows: Callable[[dict[str, Any]], list[Row]] = no_rows
    goals: Callable[[dict[str, Any]], list[Goal]] = no_rows
    serves: bool = False
    # Figures this one needs the results or state of; ``--only`` selects them too.
    requires: tuple[str, ...] = ()


def load(r: dict[str, Any]) -> str:
    """One wrk run's figures."""
    cpu = f", {r['cpu_ms']:.2f} ms CPU/req" if r.get("cpu_ms") is not None else ""
    if r.get("db_cpu_ms") is not None:
        cpu += f" + {r['db_cpu_ms']:.2f} ms database CPU/req"
    return f"{r['rps']:.0f} req/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms{cpu}"


# --- the run's context ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    token: str
    path: str


def target_headers(target: Target) -> dict[str, str]:
    """The Host and bearer token of a request to ``target``."""
    return {"Host": target.host, "Authorization": f"Bearer {target.token}"}


class KeptAlive:
    """One HTTP/1.1 keep-alive connection sending prepared requests: the latency figures
    whose clients run in the bench's own process (finalize) measure the server, and an
    httpx client spent ~0.9 ms of this 2-core machine's CPU per request beside it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> KeptAlive:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        """The answer's status and body."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.writer.write(
            f"{method} {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def kept_alive(port: int, count: int = 1) -> AsyncIterator[list[KeptAlive]]:
    """``count`` kept-alive connections to the app at ``port``, closed on the way out."""
    connections: list[KeptAlive] = []
    try:
        for _ in range(count):
            connections.append(await KeptAlive.open(port))
        yield connections
    finally:
        for connection in connections:
            connection.close()


def posts_one_at_a_time(
    port: int,
    headers: dict[str, str],
    path: str,
    body: Callable[[int], Any],
    count: int,
    warm: int,
    at_warm: Callable[[], None] = lambda: None,
) -> list[float]:
    """``warm`` + ``count`` POSTs of ``body(i)`` to ``path``, one after another on one
    kept-alive connection; the latencies of the last ``count``. Each body is encoded as JSON
    inside the timing, as the floors encode theirs; ``at_warm()`` runs once the warm-up
    requests are answered (a CPU reading starts there). Anything but 201 stops the bench."""
    sent = {**headers, "Content-Type": "application/json"}

    async def run() -> list[float]:
        latencies = []
        async with kept_alive(port) as (connection,):
            for i in range(warm + count):
                if i == warm:
                    at_warm()
                started = time.perf_counter()
                status, answer = await connection.send("POST", path, sent, json.dumps(body(i)).encode())
                elapsed = time.perf_counter() - started
                if status != 201:
                    raise BenchError(f"POST {path} answered {status}: {answer[:300]!r}")
                if i >= warm:
                    latencies.append(elapsed)
        return latencies

    return asyncio.run(run())


@dataclass(frozen=True, slots=True)
class BenchTenant:
    slug: str
    schema: str
    id: uuid.UUID
    owner_id: uuid.UUID

    @property
    def host(self) -> str:
        return f"{self.slug}.localhost"


@dataclass
class Bench:
    """What every step shares: the arguments, the scratch database, the tenants provisioned,
    the results so far, and (while serving steps run) the served apps."""

    args: argparse.Namespace
    db_name: str
    url: str
    workdir: Path
    wrk: Wrk
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    tenants: list[BenchTenant] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    # What one step leaves for a later one (memory's first half for its second).
    state: dict[str, Any] = field(default_factory=dict)
    served: Served | None = None
    settings: Settings = field(init=False)
    engine: Engine = field(init=False)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.settings = Settings(
            database_url=self.url, secret_key=self.secret, bcrypt_rounds=self.args.bcrypt_rounds
        )
        self.engine = create_operator_engine(self.settings, pool_size=2)
        self.wrk.database_cpu = self.backends_cpu_seconds

    def backends_cpu_seconds(self) -> float:
        """CPU seconds so far of the PostgreSQL backends connected to the bench's database (the
        served apps' pooled connections and the floors'), read from /proc: the server is local."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            pids = [
                pid
                for (pid,) in conn.execute(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ]
        return sum(tree_cpu_seconds(pid) for pid in pids)

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        self.engine.dispose()

    def targets(self, tenants: list[BenchTenant], path: Callable[[BenchTenant], str]) -> list[Target]:
        """One target per tenant, with a token of the tenant's owner."""
        auth = TokenAuth(self.secret, 6 * 3600, None, 0)  # type: ignore[arg-type]  # issues tokens only
        return [Target(t.host, auth.issue(t.owner_id, t.id), path(t)) for t in tenants]

    def seed_users(self, tenant: BenchTenant, count: int) -> None:
        password = hash_password("bench-user-password", 4)
        with psycopg.connect(self.url) as conn, conn.transaction():
            bind(conn, tenant.schema)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO users (name, email, phone, password) VALUES (%s, %s, %s, %s)",
                    [
                        (f"User {i}", f"user{i}@{tenant.slug}.example", "+1 555 0101", password)
                        for i in range(count)
                    ],
                )

    def server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ATRIUM_") and k != "REDIS_URL"}
        env.update(DATABASE_URL=self.url, ATRIUM_SECRET_KEY=self.secret, ATRIUM_BCRYPT_ROUNDS="4")
        if self.args.redis_url:
            env["REDIS_URL"] = self.args.redis_url
        return env

    def pg_backends(self, application_name: str) -> dict[str, float]:
        """The largest RSS among this database's backends of ``application_name`` (from /proc)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            pids = [
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s"
                    " AND backend_type = 'client backend'",
                    [self.db_name, application_name],
                )
            ]
        statuses = [s for s in (proc_status(pid) for pid in pids) if "VmRSS" in s]
        if not statuses:
            raise BenchError(
                "cannot read the PostgreSQL backends' memory from /proc: the server must run on this machine"
            )
        return {
            "pg_backend_max_rss_mb": round(max(s["VmRSS"] for s in statuses) / 1024, 1),
            "pg_backend_max_rss_anon_mb": round(max(s.get("RssAnon", 0) for s in statuses) / 1024, 1),
            "pg_backends": len(statuses),
        }
