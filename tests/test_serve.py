"""``atrium serve`` with no DATABASE_URL: the zero-setup start on the embedded database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers import free_port, wait_for_port


def _serve(cwd: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "ATRIUM_SECRET_KEY"}}
    env["ATRIUM_BCRYPT_ROUNDS"] = "4"
    return subprocess.Popen(
        [sys.executable, "-m", "atrium.scripts", "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _get(port: int, host: str, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=10)


def test_zero_setup_start_and_restart(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port)
    try:
        wait_for_port(port, timeout=120)
        assert _get(port, f"localhost:{port}", "/health").json() == {"status": "ok"}
        assert _get(port, f"demo.localhost:{port}", "/health").status_code == 200
        # The demo tenant resolves: an unknown path is a plain 404, not tenant-not-found.
        assert _get(port, f"demo.localhost:{port}", "/nothing").json()["type"] == "not-found"
        assert _get(port, f"other.localhost:{port}", "/nothing").json()["type"] == "tenant-not-found"
    finally:
        first_err = _stop(proc)
    assert f"http://demo.localhost:{port}" in first_err
    credentials = json.loads((tmp_path / ".atrium" / "demo-owner.json").read_text())
    assert credentials["password"] in first_err
    secret = (tmp_path / ".atrium" / "secret_key").read_text()

    started = time.monotonic()
    proc = _serve(tmp_path, port)
    try:
        wait_for_port(port, timeout=120)
        assert _get(port, f"demo.localhost:{port}", "/nothing").json()["type"] == "not-found"
    finally:
        second_err = _stop(proc)
    assert time.monotonic() - started < 120
    assert json.loads((tmp_path / ".atrium" / "demo-owner.json").read_text()) == credentials
    assert (tmp_path / ".atrium" / "secret_key").read_text() == secret
    assert credentials["password"] in second_err
