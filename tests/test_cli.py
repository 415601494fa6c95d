"""The ``atrium`` command line, run as operators run it (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, select, text, update

from atrium.platform.settings import Settings
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.tenancy.registry import Tenant
from tests.conftest import MadeTenant, unique_slug

OWNER_ARGS = ["--owner-name", "Ann", "--owner-email", "ann@example.com", "--owner-phone", "+1 555 0100"]


@pytest.fixture
def atrium(settings: Settings, operator_engine: Engine) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "ATRIUM_BCRYPT_ROUNDS": "4",
        "ATRIUM_SECRET_KEY": settings.secret_key,
    }
    env.pop("REDIS_URL", None)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "atrium.scripts", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def _tenant_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(text("count(*)")).select_from(Tenant)) or 0


def _schemas(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(text("SELECT nspname FROM pg_namespace")))


def test_create_show_list_json(atrium: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    slug = unique_slug("cli")
    created = atrium("tenants", "create", slug, "--name", "CLI Org", *OWNER_ARGS, "--json")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert {"id", "slug", "name", "schema", "status", "owner_id", "url"} <= tenant.keys()
    assert tenant["slug"] == slug
    assert tenant["status"] == "active"
    assert len(tenant["owner_password"]) >= 16

    shown = json.loads(atrium("tenants", "show", slug, "--json").stdout)
    assert shown["id"] == tenant["id"]
    assert shown["domains"] == []
    assert "owner_password" not in shown
    listed = json.loads(atrium("tenants", "list", "--json").stdout)
    mine = next(t for t in listed if t["slug"] == slug)
    assert mine["version"] == tenant["version"]


def test_password_from_stdin_is_used_and_not_printed(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = atrium(
        "tenants", "create", unique_slug("pw"), "--name", "X", *OWNER_ARGS, "--owner-password-stdin",
        stdin="a sturdy passphrase\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "a sturdy passphrase" not in result.stdout + result.stderr
    too_long = atrium(
        "tenants", "create", unique_slug("pw"), "--name", "X", *OWNER_ARGS, "--owner-password-stdin",
        stdin="é" * 40 + "\n",
    )  # fmt: skip
    assert too_long.returncode == 2
    assert "72 bytes" in too_long.stderr


@pytest.mark.parametrize(
    "slug",
    [
        "admin",
        "www",
        "pgsql",
        "x" * 40,
        "Acme",
        "a--b",
        "ab",
        "-abc",
        "acme'; DROP SCHEMA platform CASCADE; --",
    ],
)
def test_bad_slugs_are_refused_with_exit_2_and_leave_nothing(
    atrium: Callable[..., subprocess.CompletedProcess[str]], operator_engine: Engine, slug: str
) -> None:
    tenants_before, schemas_before = _tenant_count(operator_engine), _schemas(operator_engine)
    result = atrium("tenants", "create", slug, "--name", "Bad", *OWNER_ARGS)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("atrium: error:")
    assert "Traceback" not in result.stderr
    assert _tenant_count(operator_engine) == tenants_before
    assert _schemas(operator_engine) == schemas_before


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["tenants", "show", "no-such-tenant"], 1),
        (["tenants", "suspend", "no-such-tenant"], 1),
        (["tenants", "delete", "no-such-tenant"], 2),  # refused for want of --yes first
        (["tenants", "delete", "no-such-tenant", "--yes"], 1),
        (["tenants", "migrate", "no-such-tenant"], 1),
        (["tenants", "create", "okslug", "--name", "X"], 2),  # missing owner options
        (["tenants", "create", "okslug", "--name", "X", *OWNER_ARGS[:4], "--owner-phone", ""], 2),
        (["tenants", "frobnicate"], 2),
        (["tenants", "migrate", "--concurrency", "0"], 2),
        (["tenants", "domains", "add", "no-such-tenant", "not a domain"], 2),
    ],
)
def test_operator_errors_are_one_line_with_documented_exit_codes(
    atrium: Callable[..., subprocess.CompletedProcess[str]], args: list[str], code: int
) -> None:
    result = atrium(*args)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("atrium: error:")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_delete_refuses_without_yes_and_removes_with_it(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
    make_tenant: Callable[..., MadeTenant],
    operator_engine: Engine,
) -> None:
    made = make_tenant()
    refused = atrium("tenants", "delete", made.slug)
    assert refused.returncode == 2
    assert made.tenant.schema in _schemas(operator_engine)
    deleted = atrium("tenants", "delete", made.slug, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert made.tenant.schema not in _schemas(operator_engine)
    assert atrium("tenants", "show", made.slug).returncode == 1


def test_domains_and_suspension(
    atrium: Callable[..., subprocess.CompletedProcess[str]], make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    domain = f"app.{made.slug}.example.com"
    assert atrium("tenants", "domains", "add", made.slug, domain.upper()).returncode == 0
    taken = atrium("tenants", "domains", "add", made.slug, domain)
    assert taken.returncode == 1
    assert "already registered" in taken.stderr
    assert json.loads(atrium("tenants", "show", made.slug, "--json").stdout)["domains"] == [domain]
    assert atrium("tenants", "suspend", made.slug).returncode == 0
    assert json.loads(atrium("tenants", "show", made.slug, "--json").stdout)["status"] == "suspended"
    assert atrium("tenants", "resume", made.slug).returncode == 0
    assert atrium("tenants", "domains", "remove", made.slug, domain).returncode == 0
    assert atrium("tenants", "domains", "remove", made.slug, domain).returncode == 1


def _reset_to_base(engine: Engine, made: MadeTenant) -> None:
    """Make a tenant look like one created before the first tenant migration."""
    schema = quote_ident(made.tenant.schema)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        conn.execute(update(Tenant).where(Tenant.id == made.tenant.id).values(version=None))


def test_migrate_continues_past_a_failing_tenant(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
    make_tenant: Callable[..., MadeTenant],
    operator_engine: Engine,
) -> None:
    behind = [make_tenant() for _ in range(3)]
    broken = make_tenant()
    for made in [*behind, broken]:
        _reset_to_base(operator_engine, made)
    with operator_engine.begin() as conn:  # a conflicting object the first migration trips on
        conn.exec_driver_sql(f"CREATE TABLE {quote_ident(broken.tenant.schema)}.users (x int)")

    first = atrium("tenants", "migrate", "--concurrency", "3", "--json")
    assert first.returncode == 1
    report = json.loads(first.stdout)
    assert sorted(o["slug"] for o in report["upgraded"]) == sorted(m.slug for m in behind)
    assert [o["slug"] for o in report["failed"]] == [broken.slug]
    assert "users" in report["failed"][0]["error"]
    assert broken.slug in first.stderr
    assert first.stderr.count("\n") == 1

    listed = {t["slug"]: t for t in json.loads(atrium("tenants", "list", "--json").stdout)}
    assert all(listed[m.slug]["version"] == report["head"] for m in behind)
    assert listed[broken.slug]["version"] is None

    with operator_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {quote_ident(broken.tenant.schema)}.users")
    fixed = atrium("tenants", "migrate", broken.slug)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 upgraded" in fixed.stdout

    noop = atrium("tenants", "migrate", "--json")
    assert noop.returncode == 0
    assert json.loads(noop.stdout)["upgraded"] == []
    assert json.loads(noop.stdout)["failed"] == []
