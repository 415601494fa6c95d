"""Serving the apps and loading them: ``atrium serve`` and the floor app in subprocesses,
and wrk (bench/targets.lua) to load them."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from common import (
    BENCH_DIR,
    ROOT,
    Bench,
    BenchError,
    Target,
    atrium_command,
    free_port,
    process_tree,
    step,
    tree_cpu_seconds,
    tree_rss_mb,
)

LUA_SCRIPT = BENCH_DIR / "targets.lua"
# The server process listening on each port, so that every wrk run can report the CPU its
# server spent per request: on this shared machine a far steadier figure than the rate.
SERVERS: dict[int, int] = {}


@dataclass(frozen=True, slots=True)
class Post:
    """POST requests instead of GET: ``body`` (JSON) with each ``%s`` replaced by a key
    unique to the request, sent as ``Idempotency-Key`` too when ``idempotency``."""

    body: str
    idempotency: bool = False


class Server:
    """A server subprocess in a session of its own, with its log in a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.name, self.command, self.env, self.port, self.log = name, command, env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, workers: int, timeout: float = 90.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        SERVERS[self.port] = self.proc.pid
        deadline = time.monotonic() + timeout
        healthy = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{self.port}/health", headers={"Host": "localhost"}, timeout=5
                )
                healthy = healthy + 1 if response.status_code == 200 else 0
            except httpx.HTTPError:
                healthy = 0
            # Every worker is up once the tree holds the master and its workers.
            if healthy >= 3 and len(process_tree(self.proc.pid)) >= 1 + (workers if workers > 1 else 0):
                return
            time.sleep(0.2)
        raise BenchError(f"{self.name} did not become healthy in {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def problems(self, lines: int = 20) -> str:
        """The log's last lines that are not successful requests (errors, tracebacks)."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join([ln for ln in text if '" 200' not in ln][-lines:])

    def rss_mb(self) -> tuple[float, dict[int, float]]:
        assert self.proc is not None
        return tree_rss_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C on `atrium serve` does
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group of this server only
            self.proc.wait(timeout=10)


class Wrk:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        binary = shutil.which("wrk")
        if binary is None:
            raise BenchError("wrk is not installed (Debian: apt-get install -y wrk)")
        self.binary, self.args, self.workdir = binary, args, workdir
        # CPU seconds so far of the database backends (``Bench.backends_cpu_seconds``), set
        # once the bench has its database: a run then also reports the database's CPU per
        # request, which a rate ratio mixes with the app's on a machine they share.
        self.database_cpu: Callable[[], float] | None = None

    def run(
        self,
        port: int,
        targets: list[Target],
        seconds: float,
        pick: str = "random",
        label: str = "",
        connections: int | None = None,
        post: Post | None = None,
    ) -> dict[str, Any]:
        targets_file = self.workdir / f"targets-{uuid.uuid4().hex[:8]}.tsv"
        targets_file.write_text("".join(f"{t.host}\t{t.token}\t{t.path}\n" for t in targets))
        connections = connections or self.args.connections
        threads = max(1, min(self.args.wrk_threads, connections))
        env = {
            **os.environ,
            "BENCH_TARGETS": str(targets_file),
            "BENCH_PICK": pick,
            "BENCH_THREADS": str(threads),
        }
        if post is not None:
            env.update(
                BENCH_METHOD="POST",
                BENCH_BODY=post.body,
                BENCH_IDEMPOTENCY="1" if post.idempotency else "0",
                BENCH_RUN=uuid.uuid4().hex[:12],
            )
        command = [
            self.binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, math.ceil(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_SCRIPT),
            f"http://127.0.0.1:{port}",
        ]
        server = SERVERS.get(port)
        cpu_before = tree_cpu_seconds(server) if server is not None else None
        db_before = self.database_cpu() if self.database_cpu is not None else None
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
        cpu = tree_cpu_seconds(server) - cpu_before if server is not None and cpu_before is not None else None
        db_cpu = (
            self.database_cpu() - db_before
            if self.database_cpu is not None and db_before is not None
            else None
        )
        targets_file.unlink(missing_ok=True)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if done.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({label}): {done.stderr.strip() or done.stdout.strip()}")
        raw = json.loads(line.removeprefix("BENCH_JSON "))
        errors = raw["errors"]
        if errors["status"] or errors["connect"] or errors["timeout"]:
            raise BenchError(f"wrk saw errors in {label}: {errors} of {raw['requests']} requests")
        return {
            "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "p50_ms": round(raw["p50_us"] / 1000, 2),
            "p90_ms": round(raw["p90_us"] / 1000, 2),
            "p99_ms": round(raw["p99_us"] / 1000, 2),
            "max_ms": round(raw["max_us"] / 1000, 2),
            "requests": raw["requests"],
            "seconds": round(raw["duration_us"] / 1e6, 2),
            "tenants": len({t.host for t in targets}),
            # The server's CPU (master and workers) per request of this run (not its warm-up).
            "cpu_ms": round(cpu * 1000 / raw["requests"], 3) if cpu is not None and raw["requests"] else None,
            # The database backends' CPU per request of this run (one server is loaded at a time).
            "db_cpu_ms": round(db_cpu * 1000 / raw["requests"], 3)
            if db_cpu is not None and raw["requests"]
            else None,
        }

    def measure(
        self,
        port: int,
        targets: list[Target],
        label: str,
        seconds: float | None = None,
        pick: str = "random",
        warmup: float | None = None,
        connections: int | None = None,
        post: Post | None = None,
    ) -> dict[str, Any]:
        warmup = self.args.warmup if warmup is None else warmup
        if warmup > 0:
            self.run(port, targets, warmup, pick, f"{label} warm-up", connections, post)
        result = self.run(port, targets, seconds or self.args.duration, pick, label, connections, post)
        step(
            f"  {label}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms ({result['requests']} requests"
            + (f", {result['cpu_ms']:.2f} ms server CPU each" if result["cpu_ms"] is not None else "")
            + (
                f", {result['db_cpu_ms']:.2f} ms database CPU each"
                if result.get("db_cpu_ms") is not None
                else ""
            )
            + ")"
        )
        return result


class Served:
    """``atrium serve --workers W`` and its floor, bench/baseline_app.py (raw psycopg, the
    same uvicorn options and workers), served side by side for the steps that load them."""

    def __init__(self, bench: Bench) -> None:
        args = bench.args
        self.bench, self.workers = bench, args.workers
        self.port = free_port()
        self.app = Server(
            "atrium serve",
            [*atrium_command(), "serve", "--port", str(self.port), "--workers", str(args.workers)],
            bench.server_env(),
            self.port,
            bench.workdir / "atrium-serve.log",
        )
        self.floor = self._floor_server()

    def _floor_server(self) -> Server:
        port = free_port()
        return Server(
            "baseline",
            [
                sys.executable,
                str(BENCH_DIR / "baseline_app.py"),
                "--port",
                str(port),
                "--workers",
                str(self.workers),
            ],
            self.bench.server_env(),
            port,
            self.bench.workdir / "baseline.log",
        )

    def start(self) -> None:
        args = self.bench.args
        step(
            f"serving with `atrium serve --workers {args.workers}` on port {self.port}; wrk: "
            f"{args.connections} connections, {args.duration:g} s per run after {args.warmup:g} s warm-up"
        )
        self.app.start(self.workers)
        self.floor.start(self.workers)

    @property
    def floor_port(self) -> int:
        """The floor app's port; started again if a step stopped it."""
        if self.floor.proc is None or self.floor.proc.poll() is not None:
            self.floor = self._floor_server()
            self.floor.start(self.workers)
        return self.floor.port

    def stop_floor(self) -> None:
        self.floor.stop()

    def stop(self) -> None:
        try:
            self.app.stop()
        finally:
            self.floor.stop()

    def problems(self) -> str:
        return self.app.problems()

    def check(self, port: int, target: Target) -> None:
        response = httpx.get(
            f"http://127.0.0.1:{port}{target.path}",
            headers={"Host": target.host, "Authorization": f"Bearer {target.token}"},
            timeout=10,
        )
        if response.status_code != 200:
            raise BenchError(f"GET {target.path} answered {response.status_code}: {response.text[:300]}")
