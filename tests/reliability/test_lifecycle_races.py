"""Lifecycle steps racing the requests already in flight (issue 23, class 2).

Tasks read and write several tenants through the app without pause while an operator
deletes two of them (one announced, one not: the app keeps its cached view of the
second, and its requests meet a dropped schema), suspends and resumes one, and migrates
one from the revision below head. No answer may be a 5xx other than 503; a schema name
never appears in an answer; the tenants left standing serve again afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import Engine

from atrium.platform.db.alembic_runner import head_revision
from atrium.platform.settings import Settings
from atrium.platform.tenancy.admin import set_status
from atrium.platform.tenancy.provisioning import delete_tenant
from atrium.platform.tenancy.registry import TenantStatus
from atrium.platform.tenancy.resolution import publish_tenant_change
from atrium.platform.tenancy.schema_migrations import migrate_one, select_tenants
from tests.api import Headers, new_tenant, serve_api
from tests.conftest import MadeTenant, login_owner

WORKERS_PER_TENANT = 3


def _downgrade_one_revision(settings: Settings, schema: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-n", "tenant", "-x", f"schema={schema}", "downgrade", "-1"],
        env={**os.environ, "DATABASE_URL": settings.database_url},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


class Load:
    """Requests in a loop on one tenant until stopped; every answer counted by status."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.statuses: Counter[int] = Counter()
        self.bad: list[str] = []
        self.stop = asyncio.Event()

    async def run(self, made: MadeTenant, headers: Headers) -> None:
        while not self.stop.is_set():
            for method, path, body in (
                ("GET", "/users", None),
                ("GET", "/auth/me", None),
                ("POST", "/user-groups", {"name": f"Group {uuid.uuid4().hex[:8]}"}),
                ("GET", "/user-groups?limit=5", None),
            ):
                response = await self.client.request(method, path, json=body, headers=headers)
                # An answer from the cache alone never suspends: let the others (and the stop) run.
                await asyncio.sleep(0.002)
                self.statuses[response.status_code] += 1
                status = response.status_code
                if (status >= 500 and status != 503) or "tenant_" in response.text:
                    self.bad.append(f"{made.slug} {method} {path}: {status} {response.text[:200]}")


async def test_lifecycle_steps_answer_no_5xx_but_503(
    settings: Settings, real_redis_url: str, operator_engine: Engine
) -> None:
    shared = settings.with_overrides(redis_url=real_redis_url)
    announced, unannounced = new_tenant(operator_engine, "doom"), new_tenant(operator_engine, "doom")
    paused, moving, bystander = (new_tenant(operator_engine, p) for p in ("pause", "move", "stay"))
    _downgrade_one_revision(settings, moving.tenant.schema)

    def announce(tenant_id: uuid.UUID) -> None:
        publish_tenant_change(real_redis_url, tenant_id)

    async with serve_api(shared) as (_, client):
        tenants = [announced, unannounced, paused, moving, bystander]
        headers = {made.slug: await login_owner(client, made) for made in tenants}
        load = Load(client)
        # The response scan of serve_api would fail the first 404 or 503 on its own.
        client.event_hooks = {"request": [], "response": []}
        tasks = [
            asyncio.create_task(load.run(made, headers[made.slug]))
            for made in tenants
            for _ in range(WORKERS_PER_TENANT)
        ]
        try:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(delete_tenant, operator_engine, announced.slug, announce, 0.2)
            await asyncio.sleep(0.3)
            # Not announced: the app still serves its cached view over a dropped schema.
            await asyncio.to_thread(delete_tenant, operator_engine, unannounced.slug)
            await asyncio.sleep(0.5)
            for status in (TenantStatus.SUSPENDED, TenantStatus.ACTIVE):
                announce(await asyncio.to_thread(set_status, operator_engine, paused.slug, status))
                await asyncio.sleep(0.3)
            (ref,) = await asyncio.to_thread(select_tenants, operator_engine, [moving.slug])
            outcome = await asyncio.to_thread(migrate_one, operator_engine, ref, head_revision("tenant"))
            assert outcome.ok, outcome.error
            await asyncio.sleep(0.5)
        finally:
            load.stop.set()
            await asyncio.gather(*tasks)

        assert not load.bad, "\n".join(load.bad[:20])
        assert load.statuses[404] > 0, load.statuses  # the deleted tenants, once known
        # Those left standing serve again.
        for made in (paused, moving, bystander):
            response = await client.get("/users", headers=headers[made.slug])
            assert response.status_code == 200, (made.slug, response.text)
        for made in (announced, unannounced):
            await asyncio.sleep(0)
            announce(made.tenant.id)
        await asyncio.sleep(0.3)
        for made in (announced, unannounced):
            response = await client.get("/users", headers=headers[made.slug])
            assert response.status_code == 404 and response.json()["type"] == "tenant-not-found"
    print("answers by status:", dict(load.statuses))
