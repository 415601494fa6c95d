"""``atrium serve --forwarded-allow-ips``: behind a trusted reverse proxy, per-address
limits count the client ``X-Forwarded-For`` names; from anyone else the header is ignored.

Each case runs a real ``atrium serve`` (uvicorn's proxy-headers middleware is configured
there, not in the app) with one anonymous public post allowed per address and minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import Engine

from atrium.platform.settings import Settings
from tests import servers
from tests.api import FORM_ANSWERS, FORM_FIELDS, new_tenant
from tests.conftest import MadeTenant


@contextmanager
def _served(settings: Settings, *options: str) -> Iterator[int]:
    port = servers.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "ATRIUM_SECRET_KEY": settings.secret_key,
        "ATRIUM_BCRYPT_ROUNDS": "4",
        "ATRIUM_PUBLIC_POSTS_PER_MINUTE": "1",
    }
    env.pop("REDIS_URL", None)
    env.pop("ATRIUM_FORWARDED_ALLOW_IPS", None)
    env.pop("ATRIUM_PUBLIC_PORT", None)
    command = [sys.executable, "-m", "atrium.scripts", "serve", "--port", str(port), *options]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        servers.wait_for_port(port, timeout=60, proc=proc)  # type: ignore[arg-type]
        yield port
    finally:
        servers.stop_server(proc)


@pytest.fixture(scope="module")
def tenant(operator_engine: Engine) -> MadeTenant:
    return new_tenant(operator_engine, "proxy")


def _public_form(port: int, made: MadeTenant) -> str:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": made.host}, timeout=30) as client:
        token = client.post(
            "/auth/login", json={"email": made.owner_email, "password": made.owner_password}
        ).json()["access_token"]
        form = client.post(
            "/forms",
            json={"title": "Proxy survey", "status": "open", "public": True, "fields": FORM_FIELDS},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert form.status_code == 201, form.text
        return f"/public/forms/{form.json()['id']}/responses"


def _post_as(port: int, made: MadeTenant, url: str, forwarded_for: str) -> int:
    response = httpx.post(
        f"http://127.0.0.1:{port}{url}",
        json={"answers": FORM_ANSWERS},
        headers={"Host": made.host, "X-Forwarded-For": forwarded_for},
        timeout=30,
    )
    return response.status_code


def test_a_trusted_proxy_names_the_client(settings: Settings, tenant: MadeTenant) -> None:
    with _served(settings, "--forwarded-allow-ips", "127.0.0.1") as port:
        url = _public_form(port, tenant)
        assert _post_as(port, tenant, url, "203.0.113.1") == 201
        assert _post_as(port, tenant, url, "203.0.113.1") == 429
        # Another client behind the same proxy has its own allowance.
        assert _post_as(port, tenant, url, "203.0.113.2") == 201


def test_without_trusted_proxies_the_header_is_ignored(settings: Settings, tenant: MadeTenant) -> None:
    with _served(settings) as port:
        url = _public_form(port, tenant)
        assert _post_as(port, tenant, url, "198.51.100.1") == 201
        # A client cannot buy itself a new allowance by naming another address.
        assert _post_as(port, tenant, url, "198.51.100.2") == 429
        # The docs' server entry names the port it is served on (localhost).
        document = httpx.get(f"http://127.0.0.1:{port}/schema/openapi.json", timeout=30).json()
        assert document["servers"][0]["url"] == f"http://{{tenant}}.localhost:{port}"


def test_a_bad_proxy_address_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "atrium.scripts", "serve", "--forwarded-allow-ips", "10.0.0.1,proxy.local"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "proxy.local" in lines[0], done.stderr
