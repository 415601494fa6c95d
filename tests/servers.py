"""The real servers the tests talk to.

``ATRIUM_TEST_DATABASE_URL`` and ``ATRIUM_TEST_REDIS_URL`` name them (CI sets both);
otherwise the embedded PostgreSQL and a ``redis-server`` on a free port are started.
A test that needs a server or a binary that is missing is skipped locally and fails
in CI (``CI`` set), where a skip would hide a gap.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from tests import wire_log as wire_rules

IN_CI = bool(os.environ.get("CI"))


def require(condition: bool, reason: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must provide this: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_server(tmp: Path) -> Iterator[str]:
    """A server URL (admin database), from the environment or the embedded server."""
    url = os.environ.get("ATRIUM_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri("postgres")
    finally:
        server.cleanup()  # else the server outlives the test run


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new empty database on the server for this test run, dropped afterwards."""
    name = f"atrium_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_for_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {err.strip()[-500:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def stop_server(proc: subprocess.Popen[Any]) -> None:
    """Stop an ``atrium serve`` as Ctrl-C does (a graceful shutdown), killing it if it hangs."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def redis_server() -> Iterator[str | None]:
    url = os.environ.get("ATRIUM_TEST_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the test server; yields its URL."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    require(binary is not None, "pgbouncer (Debian package pgbouncer; .ci/run installs it)")
    assert binary is not None
    url = make_url(database_url)
    require(
        url.host is not None and not url.query.get("host"),
        "PgBouncer needs a PostgreSQL server over TCP: set ATRIUM_TEST_DATABASE_URL,"
        " e.g. postgresql://postgres@127.0.0.1:5432/postgres",
    )
    port = free_port()
    # PgBouncer refuses to run as root; it runs as postgres, which must read these
    # files (pytest's tmp_path lives under a root-only folder).
    tmp = Path(tempfile.mkdtemp(prefix="atrium-pgbouncer-"))
    tmp.chmod(0o755)
    (tmp / "users.txt").write_text(f'"{url.username}" ""\n')
    (tmp / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={url.host} port={url.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {tmp / 'users.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 4\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (tmp / name).chmod(0o644)
    command = [binary, str(tmp / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc=proc)
        yield url.set(host="127.0.0.1", port=port, query={}).render_as_string(hide_password=False)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class WireLog:
    """The wire log's proxied URL and where the checks have read up to."""

    url: str
    path: Path
    offset: int = 0

    def messages(self) -> list[wire_rules.Message]:
        messages, self.offset = wire_rules.read_log(self.path, self.offset)
        return messages

    def rule_breaks(self) -> list[str]:
        from atrium.tenants.models import tenant_metadata

        return wire_rules.rule_breaks(self.messages(), [t.name for t in tenant_metadata.sorted_tables])


@contextmanager
def wire_log(database_url: str) -> Iterator[WireLog]:
    """``database_url`` behind the logging proxy of tests/wire_log.py."""
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    if socket_dir:
        upstream = f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
    else:
        upstream = f"{url.host or '127.0.0.1'}:{url.port or 5432}"
    port = free_port()
    path = Path(tempfile.mkdtemp(prefix="atrium-wire-")) / "messages.jsonl"
    path.touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.wire_log", str(port), upstream, str(path)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc=proc)
        proxied = url.set(
            host="127.0.0.1", port=port, query={k: v for k, v in url.query.items() if k != "host"}
        )
        yield WireLog(proxied.render_as_string(hide_password=False), path)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(path.parent, ignore_errors=True)
