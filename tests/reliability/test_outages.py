"""Database and Redis outages, and pool exhaustion: clear 503s, no hang, full recovery.

Each outage uses a server the test starts itself (an embedded PostgreSQL, a
redis-server on its own port), so the shared servers are never disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from atrium.platform.db.alembic_runner import upgrade_platform
from atrium.platform.db.engines import create_operator_engine
from atrium.platform.settings import Settings
from atrium.platform.tenancy.admin import set_status
from atrium.platform.tenancy.provisioning import OwnerSpec, provision_tenant
from atrium.platform.tenancy.registry import TenantStatus
from atrium.platform.tenancy.resolution import publish_tenant_change
from tests import servers
from tests.conftest import TEST_SECRET, login, serve
from tests.probes import PROBES

OWNER = OwnerSpec("Owner", "owner@outage.example", "+1 555 0100", "outage-password")
OUTAGE_SECONDS = 2.0
RECOVERY_LIMIT = 5.0


def _problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


# --- PostgreSQL -------------------------------------------------------------------------


class EmbeddedPostgres:
    """A PostgreSQL of this test's own, which it can stop and start again."""

    def __init__(self, root: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

        self._pgserver = pgserver
        self.server: Any = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
        self.url = self.server.get_uri("postgres")

    def stop(self) -> None:
        self._pgserver.pg_ctl(
            ["-w", "-m", "immediate", "stop"], pgdata=self.server.pgdata, user=self.server.system_user
        )

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    # A short path of its own: pgserver puts the socket in the data directory only when
    # the path fits a socket address, else in a runtime folder shared with other servers.
    root = Path(tempfile.mkdtemp(prefix="atrium-pg-"))
    postgres = EmbeddedPostgres(root)
    try:
        yield postgres
    finally:
        postgres.close()
        shutil.rmtree(root, ignore_errors=True)


async def test_database_outage_gives_503_then_recovers_without_losing_writes(
    own_postgres: EmbeddedPostgres,
) -> None:
    settings = Settings(
        database_url=own_postgres.url,
        secret_key=TEST_SECRET,
        bcrypt_rounds=4,
        db_pool_size=4,
        db_pool_timeout=2,
    )
    engine = create_operator_engine(settings)
    with engine.begin() as conn:
        upgrade_platform(conn)
    tenant = provision_tenant(engine, "outage", "Outage", OWNER, bcrypt_rounds=4)
    engine.dispose()
    host = f"{tenant.slug}.localhost"

    async with serve(settings) as (_, client):
        headers = await login(client, host, OWNER.email, OWNER.password)
        created: list[str] = []
        outcomes: list[tuple[float, int, float]] = []  # (sent at, status, seconds taken)
        reads: list[tuple[float, int, float]] = []  # the same for GETs (the driver-connection path)
        stop_load = asyncio.Event()

        async def load() -> None:
            i = 0
            while not stop_load.is_set():
                i += 1
                sent = time.monotonic()
                response = await client.post("/user-groups", json={"name": f"group {i}"}, headers=headers)
                outcomes.append((sent, response.status_code, time.monotonic() - sent))
                if response.status_code == 201:
                    created.append(response.json()["id"])
                else:
                    _problem(response, 503)
                sent = time.monotonic()
                response = await client.get("/user-groups", params={"limit": 1}, headers=headers)
                reads.append((sent, response.status_code, time.monotonic() - sent))
                if response.status_code != 200:
                    _problem(response, 503)
                await asyncio.sleep(0.02)

        loader = asyncio.create_task(load())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_postgres.stop)
        down_at = time.monotonic()  # after pg_ctl has returned: the server is gone
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(own_postgres.start)
        up_at = time.monotonic()
        with contextlib.suppress(AssertionError):
            await _until(
                lambda: any(s > up_at and st == 201 for s, st, _ in outcomes), RECOVERY_LIMIT + 5, ""
            )
        await asyncio.sleep(0.3)
        stop_load.set()
        await loader

        during = [o for o in outcomes if down_at + 0.2 < o[0] < up_at - 0.2]
        assert during, "no request was sent during the outage"
        assert all(status == 503 for _, status, _ in during), during
        assert max(taken for _, _, taken in outcomes) < settings.db_pool_timeout + 3, "a request hung"
        recovered = [s for s, st, _ in outcomes if s > up_at and st == 201]
        assert recovered, "the app never served again"
        assert [r for r in reads if down_at + 0.2 < r[0] < up_at - 0.2], "no read during the outage"
        assert all(st == 503 for s, st, _ in reads if down_at + 0.2 < s < up_at - 0.2), reads
        assert any(st == 200 for s, st, _ in reads if s > up_at), "reads never recovered"
        assert max(taken for _, _, taken in reads) < settings.db_pool_timeout + 3, "a read hung"
        assert recovered[0] - up_at < RECOVERY_LIMIT

        listed = await client.get("/user-groups", params={"limit": 200}, headers=headers)
        ids = {item["id"] for item in listed.json()["items"]}
        total = listed.json()["total"]
        offset = 200
        while offset < total:
            page = await client.get("/user-groups", params={"limit": 200, "offset": offset}, headers=headers)
            ids |= {item["id"] for item in page.json()["items"]}
            offset += 200
        assert set(created) <= ids, "a create answered 201 was lost"


# --- Redis ------------------------------------------------------------------------------


class OwnRedis:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        servers.require(binary is not None, "redis-server on PATH")
        assert binary is not None
        self.binary = binary
        self.port = servers.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        servers.wait_for_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@contextlib.asynccontextmanager
async def own_redis() -> AsyncIterator[OwnRedis]:
    redis = OwnRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


async def _until(condition: Any, within: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, f"not within {within}s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_redis_outage_keeps_serving_and_invalidation_returns(
    settings: Settings, make_tenant: Any, operator_engine: Any
) -> None:
    made = make_tenant()
    async with own_redis() as redis:
        with_redis = settings.with_overrides(redis_url=redis.url, tenant_cache_ttl=300)
        async with (
            serve(with_redis, PROBES) as (app, client),
            serve(with_redis, PROBES) as (other_app, other),
        ):
            resolver = app.state.resolver
            await _until(lambda: resolver.subscribed and other_app.state.resolver.subscribed, 5, "subscribed")
            headers = await login_owner_of(client, made)

            redis.stop()
            await _until(lambda: not resolver.subscribed, 10, "the app notices the lost subscription")
            assert resolver.current_ttl <= 1.0
            # Authenticated requests, logins and logouts keep working on the local copies.
            assert (await client.get("/users", headers=headers)).status_code == 200
            second = await login_owner_of(client, made)
            assert (await client.post("/auth/logout", headers=second)).status_code == 204
            _problem(await client.get("/users", headers=second), 401)
            # The tenant cache falls back to its short TTL: a suspension is seen within ~1 s.
            set_status(operator_engine, made.slug, TenantStatus.SUSPENDED)
            await _until_status(client, made.host, 403, within=2.0)
            set_status(operator_engine, made.slug, TenantStatus.ACTIVE)
            await _until_status(client, made.host, 200, within=2.0)

            redis.start()
            await _until(
                lambda: resolver.subscribed and other_app.state.resolver.subscribed, 10, "resubscribed"
            )
            # Cross-process invalidation works again, without a restart.
            for c in (client, other):
                assert (await c.get("/probe/users", headers={"Host": made.host})).status_code == 200
            set_status(operator_engine, made.slug, TenantStatus.SUSPENDED)
            publish_tenant_change(redis.url, made.tenant.id)
            for c in (client, other):
                await _until_status(c, made.host, 403, within=1.0)
            set_status(operator_engine, made.slug, TenantStatus.ACTIVE)
            publish_tenant_change(redis.url, made.tenant.id)
            for c in (client, other):
                await _until_status(c, made.host, 200, within=1.0)
            # Revocations are shared through Redis again.
            third = await login_owner_of(client, made)
            await asyncio.sleep(RETRY_GRACE)
            assert (await client.post("/auth/logout", headers=third)).status_code == 204
            _problem(await other.get("/users", headers=third), 401)


RETRY_GRACE = 1.1  # the stores' back-off after a Redis failure


async def login_owner_of(client: httpx.AsyncClient, made: Any) -> dict[str, str]:
    return await login(client, made.host, made.owner_email, made.owner_password)


async def _until_status(client: httpx.AsyncClient, host: str, status: int, within: float) -> None:
    started = time.monotonic()
    while True:
        response = await client.get("/probe/users", headers={"Host": host})
        if response.status_code == status:
            return
        assert time.monotonic() - started < within, f"{host}: {response.status_code} after {within}s"
        await asyncio.sleep(0.05)


# --- Pool exhaustion ----------------------------------------------------------------------


async def test_pool_exhaustion_queues_briefly_then_503_and_recovers(
    settings: Settings, make_tenant: Any
) -> None:
    host = make_tenant().host
    small = settings.with_overrides(db_pool_size=2, db_max_overflow=0, db_pool_timeout=1)
    async with serve(small, PROBES) as (_, client):

        async def timed(seconds: float) -> tuple[int, float]:
            started = time.monotonic()
            response = await client.get("/probe/sleep", params={"seconds": seconds}, headers={"Host": host})
            return response.status_code, time.monotonic() - started

        results = await asyncio.wait_for(asyncio.gather(*(timed(2.0) for _ in range(8))), timeout=20)
        statuses = sorted(status for status, _ in results)
        assert statuses.count(200) == 2, results
        assert statuses.count(503) == 6, results
        assert all(taken < small.db_pool_timeout + 1.0 for status, taken in results if status == 503), results
        # Fully recovered: the pool serves again at once.
        assert (await timed(0.0))[0] == 200
