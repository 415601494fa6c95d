"""Host → tenant resolution through the real middleware and registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient
from sqlalchemy import Engine, update

from atrium.platform.app import create_app
from atrium.platform.settings import Settings
from atrium.platform.tenancy.admin import TenantNotFound, add_domain, set_status
from atrium.platform.tenancy.registry import Tenant, TenantStatus
from tests.conftest import MadeTenant, serve
from tests.probes import PROBES


@pytest.fixture
def tenants(make_tenant: Callable[..., MadeTenant], operator_engine: Engine) -> dict[str, MadeTenant]:
    active, suspended, deleting = make_tenant(), make_tenant(), make_tenant()
    set_status(operator_engine, suspended.slug, TenantStatus.SUSPENDED)
    add_domain(operator_engine, active.slug, f"app.{active.slug}.example.com", "localhost")
    # As a deletion leaves it between its announcement and the drop.
    with operator_engine.begin() as conn:
        conn.execute(update(Tenant).where(Tenant.slug == deleting.slug).values(status=TenantStatus.DELETING))
    return {"active": active, "suspended": suspended, "deleting": deleting}


async def test_host_table(settings: Settings, tenants: dict[str, MadeTenant]) -> None:
    active, suspended = tenants["active"], tenants["suspended"]
    cases = [
        # (Host header, expected status, expected problem type or tenant slug)
        (f"{active.slug}.localhost", 200, active.slug),
        (f"{active.slug.upper()}.LOCALHOST", 200, active.slug),
        (f"{active.slug}.localhost:8000", 200, active.slug),
        (f"{active.slug}.localhost.", 200, active.slug),
        (f"{active.slug}.localhost.:8443", 200, active.slug),
        (f"APP.{active.slug}.example.com:80", 200, active.slug),
        ("nobody-here.localhost", 404, "tenant-not-found"),
        ("unknown.example.org", 404, "tenant-not-found"),
        (f"{suspended.slug}.localhost", 403, "tenant-suspended"),
        (f"{tenants['deleting'].slug}.localhost", 404, "tenant-not-found"),
        ("bad_host.localhost", 400, "invalid-host"),
        # Hosts Litestar's router refuses by itself: the same problem as any invalid Host.
        (f"{active.slug} .localhost", 400, "invalid-host"),
        (f"{active.slug}.localhost, ghost.localhost", 400, "invalid-host"),
        (f"{active.slug}.localhost,ghost.localhost", 400, "invalid-host"),
        (f'"{active.slug}.localhost"', 400, "invalid-host"),
        ("acme.localhost:port", 400, "invalid-host"),
        ("", 400, "invalid-host"),
        # IP literals name no tenant: refused like any other invalid host.
        ("127.0.0.1", 400, "invalid-host"),
        ("127.0.0.1:8000", 400, "invalid-host"),
        ("2130706433", 400, "invalid-host"),
        ("[::1]", 400, "invalid-host"),
        ("[::1]:8000", 400, "invalid-host"),
        ("localhost", 404, "not-found"),
        ("localhost:8000", 404, "not-found"),
    ]
    async with serve(settings, PROBES) as (_, client):
        for host, status, expected in cases:
            response = await client.get("/probe/users", headers={"Host": host})
            assert response.status_code == status, (host, response.text)
            if status == 200:
                assert response.json()["tenant"] == expected
                assert response.json()["emails"] == [active.owner_email]
            else:
                assert response.headers["content-type"].startswith("application/problem+json")
                body = response.json()
                assert body["type"] == expected, host
                assert body["status"] == status and body["title"] and body["detail"]
                assert "tenant_" not in response.text  # never a schema name


async def test_unknown_paths_still_resolve_the_tenant(
    settings: Settings, tenants: dict[str, MadeTenant]
) -> None:
    async with serve(settings) as (_, client):
        suspended = await client.get("/nothing/here", headers={"Host": tenants["suspended"].host})
        assert suspended.status_code == 403
        unknown = await client.get("/", headers={"Host": "ghost.localhost"})
        assert unknown.status_code == 404 and unknown.json()["type"] == "tenant-not-found"
        plain = await client.get("/nothing/here", headers={"Host": tenants["active"].host})
        assert plain.status_code == 404 and plain.json()["type"] == "not-found"


@pytest.mark.parametrize("host", ["localhost", "ghost.localhost", "acme.localhost:9000", "app.example.com"])
async def test_platform_routes_on_every_host(settings: Settings, host: str) -> None:
    async with serve(settings) as (_, client):
        health = await client.get("/health", headers={"Host": host})
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        # A monitor's cache-buster is no reason to report an outage.
        busted = await client.get("/health", params={"t": "1733600000"}, headers={"Host": host})
        assert busted.status_code == 200, busted.text
        docs = await client.get("/schema", headers={"Host": host})
        assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
        spec = await client.get("/schema/openapi.json", headers={"Host": host})
        assert spec.status_code == 200 and spec.json()["info"]["title"] == "Atrium"


def test_a_tenant_being_deleted_cannot_be_resumed(
    tenants: dict[str, MadeTenant], operator_engine: Engine
) -> None:
    with pytest.raises(TenantNotFound):
        set_status(operator_engine, tenants["deleting"].slug, TenantStatus.ACTIVE)
    # Nor given a domain that would outlive it in the registry's eyes until the drop.
    with pytest.raises(TenantNotFound):
        add_domain(
            operator_engine, tenants["deleting"].slug, f"{tenants['deleting'].slug}.example.org", "localhost"
        )


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "[::1]", "[::1]:8000"])
async def test_platform_routes_answer_on_ip_literals(settings: Settings, host: str) -> None:
    async with serve(settings) as (_, client):
        health = await client.get("/health", headers={"Host": host})
        assert health.status_code == 200 and health.json() == {"status": "ok"}


@pytest.mark.parametrize("host", ["a b.localhost", "x\x01y", '"localhost"', "bad_host", "x:y:z"])
async def test_health_answers_on_invalid_hosts_and_only_health(settings: Settings, host: str) -> None:
    """API.md §1: /health answers on any Host; every other path refuses an invalid one with
    the same problem, whether or not Litestar's router would have refused it first."""
    async with serve(settings) as (_, client):
        health = await client.get("/health", headers={"Host": host})
        assert health.status_code == 200 and health.json() == {"status": "ok"}, health.text
        for path in ("/schema", "/users", "/nothing"):
            refused = await client.get(path, headers={"Host": host})
            assert refused.status_code == 400, (path, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["type"] == "invalid-host"


async def test_health_answers_head_probes_with_no_body(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        for host in ("localhost", "127.0.0.1:8000", "bad_host!", "a b.localhost", "x\x01.localhost"):
            probed = await client.head("/health", headers={"Host": host})
            assert probed.status_code == 200 and probed.content == b"", (host, probed.text)


async def test_repeated_host_headers_are_refused(settings: Settings, tenants: dict[str, MadeTenant]) -> None:
    """RFC 9112 §3.2: several Host lines are a 400, whether they agree or not, on every path."""
    active, suspended = tenants["active"], tenants["suspended"]
    cases = [
        [active.host, active.host],
        [active.host, suspended.host],
        [suspended.host, active.host],
        [active.host, "ghost.localhost"],
        [active.host, "127.0.0.1"],
        [active.host, "a b.localhost"],
        ["a b.localhost", "c d.localhost"],
        # A proxy joins repeated lines with commas (RFC 9110 §5.3): one line, still repeated.
        [f"{active.host},{suspended.host}"],
        [f"{active.host}, {active.host}"],
    ]
    async with serve(settings, PROBES) as (_, client):
        for hosts in cases:
            for path in ("/probe/users", "/health"):
                response = await client.get(path, headers=[("Host", host) for host in hosts])
                assert response.status_code == 400, (hosts, path, response.text)
                assert response.json()["type"] == "invalid-host"
                assert active.owner_email not in response.text


async def test_health_reports_an_unreachable_database(settings: Settings) -> None:
    down = settings.with_overrides(database_url="postgresql://nobody@127.0.0.1:1/nothing", db_pool_timeout=1)
    async with serve(down) as (_, client):
        response = await client.get("/health")
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["type"] == "database-unavailable"


# The apex host is one of the cases; Litestar's client warns about a bare "localhost".
@pytest.mark.filterwarnings("ignore:The base_url:UserWarning")
def test_websockets_resolve_the_tenant_too(settings: Settings, tenants: dict[str, MadeTenant]) -> None:
    app = create_app(settings, route_handlers=PROBES)
    active = tenants["active"]
    with (
        TestClient(app, base_url=f"http://{active.host}") as client,
        client.websocket_connect("/probe/ws") as ws,
    ):
        assert ws.receive_json() == {"tenant": active.slug}
    for host in ("ghost.localhost", tenants["suspended"].host, "localhost"):
        with (
            TestClient(app, base_url=f"http://{host}") as client,
            pytest.raises(WebSocketDisconnect),
            client.websocket_connect("/probe/ws") as ws,
        ):
            ws.receive_json()
