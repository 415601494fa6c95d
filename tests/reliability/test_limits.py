"""Request limits of a real server process (``atrium serve``) on 127.0.0.1.

- Every JSON route refuses a body over 1 MiB with a 413 problem, whether the body
  declares its length or streams in chunks; an upload over ``ATRIUM_MAX_UPLOAD_BYTES``
  is refused the same way.
- A request header of 100 KiB is refused (431 or 400), a query string of 100 KiB is
  refused or answered; neither is a 5xx or a hang.
- A slow or idle client cannot hold a connection: a connection that sends nothing, one
  that sends its request head one byte per second, and one that sends its body one byte
  per second are all closed within ``REQUEST_DEADLINE`` seconds; an idle keep-alive
  connection is closed after the configured 5 s (``scripts/serving.py``).
- Slow bodies do not hold database connections: a normal request still gets one while
  more slow bodies than the pool has connections are pending.

Every wait is bounded: sockets have timeouts and every loop a count and a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import BlockingPortal
from sqlalchemy import Engine

from atrium.platform.settings import Settings
from tests.api import (
    BODY_LIMITS,
    FACTORIES,
    PROBLEM_TYPE,
    Endpoint,
    Headers,
    endpoints_of,
    json_body_schema,
    new_tenant,
    resources,
    unserved_app,
)
from tests.conftest import TEST_SECRET, MadeTenant
from tests.servers import free_port, wait_for_port

MIB = 1024 * 1024
UPLOAD_LIMIT = 64 * 1024  # ATRIUM_MAX_UPLOAD_BYTES of the server under test
POOL = 2  # ATRIUM_DB_POOL_SIZE, without overflow
HUGE = 100 * 1024  # an absurd header or query string
ANSWER_WITHIN = 10.0  # seconds for any answer of the server
REQUEST_DEADLINE = 10.0  # seconds a client may take to send one whole request
KEEP_ALIVE = 5.0  # timeout_keep_alive in scripts/serving.py
SLACK = 2.0


@dataclass
class Server:
    port: int
    tenant: MadeTenant
    owner: Headers  # Host and Authorization of the owner
    rows: dict[str, str]  # resource → id of a real row
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


async def _rows(url: str, owner: Headers) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return {r: await FACTORIES[r](client, owner, {}) for r in resources(unserved_app()) if r in FACTORIES}


@pytest.fixture(scope="module")
def server(
    settings: Settings,
    operator_engine: Engine,
    portal: BlockingPortal,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    tenant = new_tenant(operator_engine, "lim")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "ATRIUM_BASE_DOMAIN"}}
    env.update(
        DATABASE_URL=settings.database_url,
        ATRIUM_SECRET_KEY=TEST_SECRET,
        ATRIUM_BCRYPT_ROUNDS="4",
        ATRIUM_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
        ATRIUM_DB_POOL_SIZE=str(POOL),
        ATRIUM_DB_MAX_OVERFLOW="0",
        ATRIUM_DB_POOL_TIMEOUT="3",
    )
    log = tmp_path_factory.mktemp("limits") / "server.log"
    with log.open("wb") as sink:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "atrium.scripts", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=60, proc=proc)
        url = f"http://127.0.0.1:{port}"
        login = httpx.post(
            f"{url}/auth/login",
            json={"email": tenant.owner_email, "password": tenant.owner_password},
            headers={"Host": tenant.host},
            timeout=ANSWER_WITHIN,
        )
        assert login.status_code == 200, login.text
        owner = {"Host": tenant.host, "Authorization": f"Bearer {login.json()['access_token']}"}
        yield Server(port, tenant, owner, portal.call(_rows, url, owner), log)
    finally:
        _stop(proc)
    assert b"Traceback" not in log.read_bytes(), log.read_text(errors="replace")[-3000:]


# ---------------------------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------------------------


def _json_routes() -> list[Endpoint]:
    app = unserved_app()
    routes = [e for e in endpoints_of(app, "create", "update") if json_body_schema(app, e) is not None]
    return [*routes, Endpoint("auth", "login", "POST", "/auth/login")]


def _assert_problem(response: httpx.Response, status: int, what: str) -> None:
    assert response.status_code == status, f"{what}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("content-type", "").startswith(PROBLEM_TYPE), (what, response.headers)
    assert response.json()["status"] == status, (what, response.text[:300])


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("endpoint", _json_routes(), ids=str)
def test_json_bodies_over_the_limit_are_refused(server: Server, endpoint: Endpoint, streamed: bool) -> None:
    # Past the route's limit: 1 MiB, or more where a field may be that large (documents).
    body = b'{"name": "' + b"a" * BODY_LIMITS.get(endpoint.resource, MIB) + b'"}'
    content: bytes | Iterator[bytes] = body
    if streamed:  # no Content-Length: the limit must hold while the body streams in
        content = iter([body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)])
    url = server.url + endpoint.url(server.rows.get(endpoint.resource))
    headers = {**server.owner, "Content-Type": "application/json"}
    started = time.monotonic()
    response = httpx.request(endpoint.method, url, content=content, headers=headers, timeout=ANSWER_WITHIN)
    _assert_problem(response, 413, f"{endpoint} with {len(body)} bytes")
    assert time.monotonic() - started < ANSWER_WITHIN


def test_uploads_over_the_limit_are_refused(server: Server) -> None:
    for size, status in [(UPLOAD_LIMIT, 201), (UPLOAD_LIMIT + 1, 413), (4 * UPLOAD_LIMIT, 413)]:
        response = httpx.post(
            f"{server.url}/media",
            files={"file": ("big.bin", b"x" * size, "application/octet-stream")},
            headers=server.owner,
            timeout=ANSWER_WITHIN,
        )
        if status == 201:
            assert response.status_code == 201, response.text
        else:
            _assert_problem(response, status, f"an upload of {size} bytes")


# ---------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over a socket
# ---------------------------------------------------------------------------------------------


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_WITHIN)
    sock.settimeout(ANSWER_WITHIN)
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and what came with it; 0 when the server closed without answering."""
    data = b""
    deadline = time.monotonic() + ANSWER_WITHIN
    for _ in range(10_000):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete answer within {ANSWER_WITHIN} s: {data[:200]!r}")
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            break
    if not data.startswith(b"HTTP/1."):
        return 0, data
    return int(data.split(b" ", 2)[1]), data


def _request_head(server: Server, target: bytes, extra: bytes = b"") -> bytes:
    host = server.owner["Host"].encode()
    token = server.owner["Authorization"].encode()
    return (
        b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nAuthorization: " + token + b"\r\n"
        b"Connection: close\r\n" + extra + b"\r\n"
    )


def test_a_huge_header_is_refused(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(_request_head(server, b"/users", b"X-Padding: " + b"a" * HUGE + b"\r\n"))
        status, answer = _read_answer(sock)
    assert status in {400, 431}, f"a {HUGE}-byte header was answered {status}: {answer[:300]!r}"


def test_a_huge_query_string_is_refused_or_answered(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(_request_head(server, b"/users?offset=0&x=" + b"a" * HUGE))
        status, answer = _read_answer(sock)
    assert 200 <= status < 500, f"a {HUGE}-byte query string was answered {status}: {answer[:300]!r}"


# ---------------------------------------------------------------------------------------------
# Slow and idle clients
# ---------------------------------------------------------------------------------------------


def _held_for(server: Server, first: bytes, drip: bytes, cap: float) -> float | None:
    """Seconds until the server closes (or answers) a connection that sends ``first``, then
    one byte of ``drip`` per second; None if it is still open after ``cap`` seconds."""
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(first)
        sock.settimeout(1.0)
        for index in range(int(cap) + 1):
            if time.monotonic() - started > cap:
                return None
            try:
                if drip:
                    sock.send(drip[index % len(drip) : index % len(drip) + 1])
                if sock.recv(4096) is not None:
                    return time.monotonic() - started  # closed (b"") or answered (408, 400, ...)
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - started  # reset or broken pipe: closed
    return None


def test_slow_and_idle_clients_are_disconnected(server: Server) -> None:
    cap = REQUEST_DEADLINE + SLACK
    head = _request_head(server, b"/users")
    body_head = head.replace(b"GET ", b"POST ", 1).replace(
        b"\r\n\r\n", b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    answered_then_idle = head.replace(b"Connection: close\r\n", b"")
    scenarios: dict[str, tuple[Callable[[], float | None], float]] = {
        "a connection that sends nothing": (lambda: _held_for(server, b"", b"", cap), REQUEST_DEADLINE),
        "a request head at one byte per second": (
            lambda: _held_for(server, head[:20], head[20:], cap),
            REQUEST_DEADLINE,
        ),
        "a body at one byte per second": (lambda: _held_for(server, body_head, b" ", cap), REQUEST_DEADLINE),
        "an idle keep-alive connection after a response": (
            lambda: _idle_after_answer(server, answered_then_idle, cap),
            KEEP_ALIVE,
        ),
    }
    with ThreadPoolExecutor(len(scenarios)) as pool:
        held = {name: pool.submit(run) for name, (run, _) in scenarios.items()}
        observed = {name: future.result(timeout=cap + 30) for name, future in held.items()}
    report = ", ".join(
        f"{name}: " + (f"open after {cap:.0f} s" if seconds is None else f"closed after {seconds:.1f} s")
        for name, seconds in observed.items()
    )
    too_long = [
        name
        for name, (_, bound) in scenarios.items()
        if observed[name] is None or observed[name] > bound + SLACK
    ]
    assert not too_long, f"held longer than allowed: {too_long}; observed {report}"


def _idle_after_answer(server: Server, request: bytes, cap: float) -> float | None:
    with _connect(server) as sock:
        sock.sendall(request)
        status, _ = _read_answer(sock)
        assert status == 200, status
        started = time.monotonic()
        sock.settimeout(1.0)
        for _ in range(int(cap) + 1):
            try:
                if sock.recv(65536) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                if time.monotonic() - started > cap:
                    return None
            except OSError:
                return time.monotonic() - started
    return None


def test_slow_bodies_do_not_hold_database_connections(server: Server) -> None:
    body_head = _request_head(server, b"/user-groups").replace(b"GET ", b"POST ", 1)
    body_head = body_head.replace(
        b"\r\n\r\n", b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    slow = [_connect(server) for _ in range(POOL + 2)]
    try:
        for sock in slow:
            sock.sendall(body_head)
        time.sleep(0.5)  # every slow request is authenticated and waits for its body
        started = time.monotonic()
        response = httpx.get(f"{server.url}/users", headers=server.owner, timeout=ANSWER_WITHIN)
        assert response.status_code == 200, response.text[:300]
        assert time.monotonic() - started < 2.0
    finally:
        for sock in slow:
            sock.close()


# ---------------------------------------------------------------------------------------------
# Host header lines (RFC 9112 §3.2: more than one is a 400)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_host(operator_engine: Engine) -> str:
    return new_tenant(operator_engine, "lim").host


def _with_hosts(server: Server, target: bytes, hosts: list[bytes]) -> tuple[int, bytes]:
    """Send a request with exactly these Host lines (none, one or several) over a raw socket."""
    lines = b"".join(b"Host: " + host + b"\r\n" for host in hosts)
    token = server.owner["Authorization"].encode()
    head = b"GET " + target + b" HTTP/1.1\r\n" + lines + b"Authorization: " + token + b"\r\n"
    head += b"Connection: close\r\n\r\n"
    with _connect(server) as sock:
        sock.sendall(head)
        status, answer = _read_answer(sock)
        # The body may follow the head in later segments.
        for _ in range(100):
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            answer += chunk
    return status, answer


@pytest.mark.parametrize(
    "case",
    [
        "same twice",
        "own then other",
        "other then own",
        "own then unknown",
        "own then IP",
        "own, other in one line",
    ],
)
@pytest.mark.parametrize("target", [b"/auth/me", b"/users", b"/health"], ids=lambda t: t.decode())
def test_repeated_and_conflicting_host_lines_are_refused(
    server: Server, other_host: str, case: str, target: bytes
) -> None:
    own, other = server.owner["Host"].encode(), other_host.encode()
    hosts = {
        "same twice": [own, own],
        "own then other": [own, other],
        "other then own": [other, own],
        "own then unknown": [own, b"ghost.localhost"],
        "own then IP": [own, b"127.0.0.1"],
        "own, other in one line": [own + b", " + other],
    }[case]
    status, answer = _with_hosts(server, target, hosts)
    assert status == 400, f"{case} on {target!r}: {answer[:300]!r}"
    # "a, b" is how a proxy joins repeated lines: refused as repeated, by the tenant middleware.
    assert PROBLEM_TYPE.encode() in answer and b'"status":400' in answer, answer[:500]
    assert server.tenant.owner_email.encode() not in answer


@pytest.mark.parametrize(
    ("hosts", "target", "status"),
    [
        ([], b"/users", 400),
        ([b"127.0.0.1"], b"/users", 400),
        ([b"127.0.0.1:%d"], b"/auth/me", 400),
        ([b"[::1]:%d"], b"/auth/me", 400),
        ([b"127.0.0.1:%d"], b"/health", 200),
        ([b"[::1]"], b"/health", 200),
        # Any Host for /health, none included (an HTTP/1.0 probe sends none).
        ([], b"/health", 200),
        ([b"bad_host!"], b"/health", 200),
        ([b"bad_host!"], b"/schema/openapi.json", 400),
    ],
    ids=str,
)
def test_missing_and_ip_literal_hosts(server: Server, hosts: list[bytes], target: bytes, status: int) -> None:
    lines = [host % server.port if b"%d" in host else host for host in hosts]
    answered, answer = _with_hosts(server, target, lines)
    assert answered == status, f"{lines} on {target!r}: {answer[:300]!r}"
    if status == 400:
        assert b"invalid-host" in answer, answer[:500]


def test_the_server_survived(server: Server) -> None:
    """After all of the above, the server still answers (and logged no traceback: see the fixture)."""
    response = httpx.get(f"{server.url}/auth/me", headers=server.owner, timeout=ANSWER_WITHIN)
    assert response.status_code == 200, response.text
    assert json.loads(response.text)["user"]["email"] == server.tenant.owner_email
