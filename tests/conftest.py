from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from litestar import Litestar
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.platform.app import create_app
from atrium.platform.db.alembic_runner import upgrade_platform
from atrium.platform.db.engines import create_operator_engine
from atrium.platform.settings import Settings
from atrium.platform.tenancy.provisioning import OwnerSpec, ProvisionedTenant, provision_tenant
from tests import servers

# Test modules import helpers from tests.api before pytest loads it as their plugin; without
# this its asserts (assert_problem, the response scan) would lose pytest's detailed messages.
pytest.register_assert_rewrite("tests.api")

TEST_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.WireLog]:
    with (
        servers.postgres_server(tmp_path_factory.mktemp("pg")) as server_url,
        servers.fresh_database(server_url) as url,
        servers.wire_log(url) as log,
    ):
        yield log


@pytest.fixture(scope="session")
def database_url(wire: servers.WireLog) -> str:
    """The test database, reached through the wire log (tests/wire_log.py)."""
    return wire.url


@pytest.fixture(autouse=True)
def _statements_keep_the_citus_rules(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that talks to the database fails if a statement it caused breaks a rule
    of tests/wire_log.py (set_config beside a tenant table; several statements in one
    message)."""
    if "database_url" not in request.fixturenames:
        yield
        return
    log: servers.WireLog = request.getfixturevalue("wire")
    yield
    # Everything since the last check: the statements of module and session fixtures too.
    breaks = log.rule_breaks()
    assert not breaks, "statements that Citus refuses:\n" + "\n".join(breaks)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str | None]:
    with servers.redis_server() as url:
        yield url


@pytest.fixture
def real_redis_url(redis_url: str | None) -> str:
    servers.require(redis_url is not None, "a Redis server (ATRIUM_TEST_REDIS_URL or redis-server on PATH)")
    assert redis_url is not None
    return redis_url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key=TEST_SECRET,
        bcrypt_rounds=4,
        db_pool_size=5,
        db_max_overflow=5,
        db_pool_timeout=30,
    )


@pytest.fixture(scope="session")
def operator_engine(settings: Settings) -> Iterator[Engine]:
    engine = create_operator_engine(settings)
    with engine.begin() as conn:
        upgrade_platform(conn)
    yield engine
    engine.dispose()


@dataclass(frozen=True)
class MadeTenant:
    tenant: ProvisionedTenant
    owner_email: str
    owner_password: str

    @property
    def slug(self) -> str:
        return self.tenant.slug

    @property
    def host(self) -> str:
        return f"{self.tenant.slug}.localhost"


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_tenant(operator_engine: Engine, settings: Settings) -> Callable[..., MadeTenant]:
    def make(slug: str | None = None, name: str = "Test Org") -> MadeTenant:
        slug = slug or unique_slug()
        email = f"owner@{slug}.example"
        password = secrets.token_urlsafe(12)
        tenant = provision_tenant(
            operator_engine, slug, name, OwnerSpec("Owner", email, "+1 555 0100", password), bcrypt_rounds=4
        )
        return MadeTenant(tenant, email, password)

    return make


@asynccontextmanager
async def serve(
    settings: Settings, route_handlers: Sequence[object] = (), host: str = "localhost"
) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    """The app with its lifespan running, and a client whose default host is ``host``.

    httpx's ASGI transport runs requests on the test's own event loop, so gathered
    requests really interleave (Litestar's AsyncTestClient runs the app on a portal
    thread and serialises them).
    """
    app = create_app(settings, route_handlers=route_handlers)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url=f"http://{host}", timeout=60) as client,
    ):
        yield app, client


async def login(client: httpx.AsyncClient, host: str, email: str, password: str) -> dict[str, str]:
    """Log in on ``host``; returns the headers (Host and Authorization) for later calls."""
    response = await client.post(
        "/auth/login", json={"email": email, "password": password}, headers={"Host": host}
    )
    assert response.status_code == 200, response.text
    return {"Host": host, "Authorization": f"Bearer {response.json()['access_token']}"}


async def login_owner(client: httpx.AsyncClient, made: MadeTenant) -> dict[str, str]:
    return await login(client, made.host, made.owner_email, made.owner_password)


async def server_prepared(driver_connection: Any) -> list[str]:
    """The statements the server holds prepared for a psycopg connection, then committed:
    the pool's reset would roll back, and psycopg drops its prepared statements with that."""
    cursor = await driver_connection.execute("SELECT statement FROM pg_prepared_statements")
    statements = [row[0] for row in await cursor.fetchall()]
    await driver_connection.commit()
    return statements


@contextmanager
def statements_run(engine: AsyncEngine, containing: str) -> Iterator[list[str]]:
    """The statements ``engine`` sends while inside, those whose text has ``containing``."""
    statements: list[str] = []

    def capture(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if containing in statement:
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)


@contextmanager
def driver_statements() -> Iterator[list[str]]:
    """Every statement this process's psycopg cursors execute while inside, whichever path
    sent it (a session, a Core connection, or the app's own driver-level reads and writes).
    Instrumentation only: each call still goes to the real ``execute``."""
    statements: list[str] = []
    real = psycopg.AsyncCursor.execute

    async def execute(self: psycopg.AsyncCursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(query if isinstance(query, str) else str(query))
        return await real(self, query, *args, **kwargs)

    psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        psycopg.AsyncCursor.execute = real  # type: ignore[method-assign]
