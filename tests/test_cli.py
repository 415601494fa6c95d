"""The ``atrium`` command line, run as operators run it (a subprocess)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, event, select, text, update

from atrium.platform.db.alembic_runner import current_revision
from atrium.platform.settings import Settings
from atrium.platform.tenancy import verification
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.tenancy.registry import Tenant
from atrium.platform.tenancy.resolution import ALL_TENANTS, CHANNEL
from tests.conftest import MadeTenant, unique_slug
from tests.servers import fresh_database

OWNER_ARGS = ["--owner-name", "Ann", "--owner-email", "ann@example.com", "--owner-phone", "+1 555 0100"]


@pytest.fixture
def atrium(
    settings: Settings, operator_engine: Engine, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The CLI on the test database, run in a folder of its own (no ./.atrium/ of a dev run)."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "ATRIUM_BCRYPT_ROUNDS": "4",
        "ATRIUM_SECRET_KEY": settings.secret_key,
    }
    env.pop("REDIS_URL", None)
    env.pop("ATRIUM_PUBLIC_PORT", None)

    def run(
        *args: str, stdin: str | bytes | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "atrium.scripts", *args],
            cwd=tmp_path,
            env={**env, **(extra_env or {})},
            input=stdin.decode("latin-1") if isinstance(stdin, bytes) else stdin,
            capture_output=True,
            text=True,
            # Bytes given as bytes: each byte one latin-1 character, written back as that byte.
            encoding="latin-1" if isinstance(stdin, bytes) else None,
            timeout=120,
            check=False,
        )
        return done

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
    # Bytes that are not UTF-8: bad input, said in one line (it was "unexpected", exit 1).
    not_text = atrium(
        "tenants", "create", unique_slug("pw"), "--name", "X", *OWNER_ARGS, "--owner-password-stdin",
        stdin=b"\xff\xfe password\n",
    )  # fmt: skip
    assert not_text.returncode == 2
    assert not_text.stderr == "atrium: error: the password on stdin is not UTF-8 text\n"


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


@pytest.mark.parametrize("owner_name", ["Ann ", " Ann", "Ann\nLee", "Ann\u202eeeL"])
def test_an_owner_name_the_api_would_refuse_is_refused_here_too(
    atrium: Callable[..., subprocess.CompletedProcess[str]], operator_engine: Engine, owner_name: str
) -> None:
    tenants_before = _tenant_count(operator_engine)
    args = ["--owner-name", owner_name, *OWNER_ARGS[2:]]
    result = atrium("tenants", "create", unique_slug("own"), "--name", "Owner test", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "owner name must be one line" in result.stderr
    assert _tenant_count(operator_engine) == tenants_before


def test_create_says_what_collided(
    atrium: Callable[..., subprocess.CompletedProcess[str]], operator_engine: Engine
) -> None:
    """Not "already exists" for every duplicate: a demo user's email as the owner's, and a
    schema left without its tenant, each say what they are."""
    slug = unique_slug("col")
    owner = ["--owner-name", "Ada", "--owner-email", "ADA@demo.example", "--owner-phone", "+1 555 0100"]
    demo = atrium("tenants", "create", slug, "--name", "Collide", *owner, "--demo")
    assert demo.returncode == 2 and "demo's sample users" in demo.stderr, demo.stderr
    assert atrium("tenants", "show", slug).returncode == 1  # nothing was left
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA tenant_{slug.replace('-', '_')}")
    try:
        left = atrium("tenants", "create", slug, "--name", "Collide", *OWNER_ARGS)
        assert left.returncode == 1 and "exists without a tenant" in left.stderr, left.stderr
        assert left.stderr.count("\n") == 1
    finally:
        with operator_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA tenant_{slug.replace('-', '_')}")


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
        # A slug that cannot name a tenant is bad input, on every command, not "not found".
        (["tenants", "show", "BAD!"], 2),
        (["tenants", "suspend", "Bad Slug"], 2),
        (["tenants", "delete", "www", "--yes"], 2),
        (["tenants", "migrate", "no-such-tenant", "BAD!"], 2),
        (["tenants", "domains", "add", "BAD SLUG", "z.example"], 2),
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


def test_a_database_that_never_answers_is_one_line_and_exit_1_not_a_hang(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A listener that accepts and says nothing (a half-open firewall): the connect timeout
    (engines.CONNECT_TIMEOUT) ends the command."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://root@127.0.0.1:{silent.getsockname()[1]}/nothing"
        result = atrium("tenants", "list", extra_env={"DATABASE_URL": url})
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("atrium: error:") and result.stderr.count("\n") == 1, result.stderr
    assert "timeout" in result.stderr


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = atrium("serve", "--port", str(port), "--workers", "2")
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"atrium: error: cannot serve on 127.0.0.1:{port}: Address already in use\n"


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
    suspended = atrium("tenants", "suspend", made.slug)
    assert suspended.returncode == 0
    # Without REDIS_URL the servers learn of it only when their cache expires: said so.
    assert (
        suspended.stderr.startswith("atrium: warning: REDIS_URL is not set")
        and suspended.stderr.count("\n") == 1
    )
    assert json.loads(atrium("tenants", "show", made.slug, "--json").stdout)["status"] == "suspended"
    assert atrium("tenants", "resume", made.slug).returncode == 0
    assert atrium("tenants", "domains", "remove", made.slug, domain).returncode == 0
    assert atrium("tenants", "domains", "remove", made.slug, domain).returncode == 1
    # A delete changes the tenant twice (announced, then dropped): warned once.
    deleted = atrium("tenants", "delete", made.slug, "--yes")
    assert deleted.returncode == 0 and deleted.stderr.count("REDIS_URL is not set") == 1, deleted.stderr


def _rows(output: str) -> list[list[str]]:
    """A rich table's lines split into cells (its rule line left out)."""
    return [line.split() for line in output.splitlines() if line.strip() and set(line.strip()) != {"─"}]


def test_human_output_is_tables_with_a_header_row(
    atrium: Callable[..., subprocess.CompletedProcess[str]], make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    domains = [f"a.{made.slug}.example.com", f"b.{made.slug}.example.com"]
    for domain in domains:
        assert atrium("tenants", "domains", "add", made.slug, domain).returncode == 0

    listed = atrium("tenants", "list")
    assert listed.returncode == 0, listed.stderr
    rows = _rows(listed.stdout)
    assert rows[0] == ["slug", "status", "version", "name", "url", "domains"]
    mine = next(row for row in rows if row[0] == made.slug)
    assert mine[1:3] == ["active", made.tenant.version]

    shown = atrium("tenants", "show", made.slug)
    assert shown.returncode == 0, shown.stderr
    rows = _rows(shown.stdout)
    assert rows[0] == ["field", "value"]
    assert ["domains", f"{domains[0]},", domains[1]] in rows
    assert "[" not in shown.stdout
    as_json = json.loads(atrium("tenants", "show", made.slug, "--json").stdout)
    assert as_json["domains"] == domains


def test_tenant_urls_show_the_port_served_on(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
    make_tenant: Callable[..., MadeTenant],
    tmp_path: Path,
) -> None:
    made = make_tenant()

    def url(**env: str) -> str:
        return json.loads(atrium("tenants", "show", made.slug, "--json", extra_env=env).stdout)["url"]

    assert url() == f"http://{made.slug}.localhost:8000"
    # `atrium serve --port 8123` in this folder left its port behind.
    (tmp_path / ".atrium").mkdir()
    (tmp_path / ".atrium" / "serve-port").write_text("8123")
    assert url() == f"http://{made.slug}.localhost:8123"
    assert url(ATRIUM_PUBLIC_PORT="9000") == f"http://{made.slug}.localhost:9000"


def test_a_database_without_the_platform_schema_says_to_upgrade(
    atrium: Callable[..., subprocess.CompletedProcess[str]], settings: Settings
) -> None:
    with fresh_database(settings.database_url) as empty:
        result = atrium("tenants", "list", extra_env={"DATABASE_URL": empty})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "atrium db upgrade" in result.stderr, result.stderr


def test_a_platform_schema_behind_this_release_says_to_upgrade(
    atrium: Callable[..., subprocess.CompletedProcess[str]], settings: Settings
) -> None:
    """A database an older release upgraded: its registry refuses what this one writes (a
    deletion's status), and the operator is told why rather than shown a constraint."""
    from sqlalchemy import create_engine

    from atrium.platform.db.alembic_runner import run_upgrade
    from atrium.platform.tenancy.naming import PLATFORM_SCHEMA

    with fresh_database(settings.database_url) as older:
        engine = create_engine(older.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.begin() as conn:
                run_upgrade(conn, "platform", PLATFORM_SCHEMA, "0001")
        finally:
            engine.dispose()
        env = {"DATABASE_URL": older}
        slug = unique_slug("old")
        assert atrium("tenants", "create", slug, "--name", "Old", *OWNER_ARGS, extra_env=env).returncode == 0
        result = atrium("tenants", "delete", slug, "--yes", extra_env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "the platform schema is at 0001" in result.stderr and "atrium db upgrade" in result.stderr


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
    # The command migrates every tenant of the shared database: only ours are asserted on,
    # so a tenant another test left behind head does not fail this one.
    ours = {m.slug for m in [*behind, broken]}
    upgraded = sorted(o["slug"] for o in report["upgraded"] if o["slug"] in ours)
    assert upgraded == sorted(m.slug for m in behind)
    failed = [o for o in report["failed"] if o["slug"] in ours]
    assert [o["slug"] for o in failed] == [broken.slug]
    assert "users" in failed[0]["error"]
    assert broken.slug in first.stderr
    assert first.stderr.count("atrium: error:") == len(report["failed"])  # one line per failed tenant

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


def _alembic_downgrade(settings: Settings, schema: str, revision: str) -> None:
    """Move a tenant schema by hand, with the Alembic command the README documents."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-n", "tenant", "-x", f"schema={schema}", "downgrade", revision],
        env={**os.environ, "DATABASE_URL": settings.database_url},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _verified(atrium: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> dict[str, Any]:
    result = atrium("tenants", "verify", *args, "--json")
    report = json.loads(result.stdout)
    # Exit 1 exactly when something still differs once the command is done.
    unresolved = [d for d in report["differing"] if not d["repaired"] or not d["version_table"]]
    assert result.returncode == (1 if unresolved else 0), result.stderr
    if unresolved:
        assert result.stderr.startswith("atrium: error:") and result.stderr.count("\n") == 1
    return report


def test_verify_finds_a_schema_moved_by_hand_and_repair_records_it(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
    make_tenant: Callable[..., MadeTenant],
    settings: Settings,
) -> None:
    moved, untouched = make_tenant(), make_tenant()
    head = moved.tenant.version
    _alembic_downgrade(settings, moved.tenant.schema, "0002")
    listed = {t["slug"]: t for t in json.loads(atrium("tenants", "list", "--json").stdout)}
    assert listed[moved.slug]["version"] == head  # the registry alone does not know

    report = _verified(atrium)
    assert report["head"] == head and report["checked"] >= 2
    mine = [d for d in report["differing"] if d["slug"] == moved.slug]
    assert mine == [
        {
            "slug": moved.slug,
            "schema": moved.tenant.schema,
            "registry_version": head,
            "schema_version": "0002",
            "version_table": True,
            "problem": f"registry says {head}, schema is at 0002",
            "repaired": False,
        }
    ]
    assert untouched.slug not in {d["slug"] for d in report["differing"]}
    plain = atrium("tenants", "verify")
    assert plain.returncode == 1 and moved.slug in plain.stdout and moved.slug in plain.stderr
    assert plain.stdout.splitlines()[0].split() == ["slug", "registry", "schema", "problem"]

    repaired = _verified(atrium, "--repair")
    assert [d["repaired"] for d in repaired["differing"] if d["slug"] == moved.slug] == [True]
    assert json.loads(atrium("tenants", "show", moved.slug, "--json").stdout)["version"] == "0002"
    assert moved.slug not in {d["slug"] for d in _verified(atrium)["differing"]}
    assert atrium("tenants", "migrate", moved.slug).returncode == 0  # back to head for later tests


def test_migrate_upgrades_a_schema_the_registry_calls_current(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
    make_tenant: Callable[..., MadeTenant],
    settings: Settings,
    operator_engine: Engine,
) -> None:
    moved = make_tenant()
    head = moved.tenant.version
    _alembic_downgrade(settings, moved.tenant.schema, "0002")
    result = atrium("tenants", "migrate", moved.slug, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["already_current"] == 0
    assert [(o["slug"], o["from_version"], o["to_version"]) for o in report["upgraded"]] == [
        (moved.slug, "0002", head)
    ]
    with operator_engine.connect() as conn:
        assert current_revision(conn, moved.tenant.schema) == head
    assert moved.slug not in {d["slug"] for d in _verified(atrium)["differing"]}


def _heard(subscription: Any, seconds: float) -> list[str]:
    """The tenant-change messages published within ``seconds`` (other tests may publish too)."""
    deadline, heard = time.monotonic() + seconds, []
    while (left := deadline - time.monotonic()) > 0:
        message = subscription.get_message(timeout=left)
        if message is not None:
            heard.append(message["data"].decode())
    return heard


def test_migrate_tells_the_app_processes_to_drop_their_callers(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
    make_tenant: Callable[..., MadeTenant],
    settings: Settings,
    real_redis_url: str,
) -> None:
    """A migration may change the built-in roles' permissions: the processes must not keep
    serving the callers they remember with the old ones until the TTL runs out."""
    moved = make_tenant()
    _alembic_downgrade(settings, moved.tenant.schema, "0007")
    client = redis.Redis.from_url(real_redis_url)
    subscription = client.pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(CHANNEL)
    try:
        result = atrium("tenants", "migrate", moved.slug, extra_env={"REDIS_URL": real_redis_url})
        assert result.returncode == 0, result.stderr
        assert ALL_TENANTS in _heard(subscription, 3.0)
        current = atrium("tenants", "migrate", moved.slug, extra_env={"REDIS_URL": real_redis_url})
        assert current.returncode == 0, current.stderr
        assert ALL_TENANTS not in _heard(subscription, 1.0)  # nothing upgraded: nothing to drop
    finally:
        subscription.close()
        client.close()


def test_migrate_records_the_real_version_of_a_schema_already_at_head(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
    make_tenant: Callable[..., MadeTenant],
    operator_engine: Engine,
) -> None:
    made = make_tenant()
    with operator_engine.begin() as conn:
        conn.execute(update(Tenant).where(Tenant.id == made.tenant.id).values(version="0001"))
    result = atrium("tenants", "migrate", made.slug, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["already_current"] == 1
    assert json.loads(atrium("tenants", "show", made.slug, "--json").stdout)["version"] == made.tenant.version


def test_verify_reports_a_schema_without_version_table_and_repair_leaves_it_reported(
    atrium: Callable[..., subprocess.CompletedProcess[str]],
    make_tenant: Callable[..., MadeTenant],
    operator_engine: Engine,
) -> None:
    made = make_tenant()
    with operator_engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {quote_ident(made.tenant.schema)}.alembic_version")
    try:
        # The repair records "no version" (so migrate sees the tenant as behind); the
        # tenant stays reported, and verify keeps failing, until the schema is fixed.
        for args, repaired in (((), False), (("--repair",), True), (("--repair",), False)):
            report = _verified(atrium, *args)
            mine = next(d for d in report["differing"] if d["slug"] == made.slug)
            assert (mine["version_table"], mine["schema_version"], mine["repaired"]) == (
                False,
                None,
                repaired,
            )
            assert mine["problem"] == "the schema has no version table"
            assert atrium("tenants", "verify", *args).returncode == 1
        assert json.loads(atrium("tenants", "show", made.slug, "--json").stdout)["version"] is None
    finally:
        assert atrium("tenants", "delete", made.slug, "--yes").returncode == 0


def test_applied_versions_reads_every_schema_in_batches_not_one_per_schema(
    operator_engine: Engine, make_tenant: Callable[..., MadeTenant], monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [make_tenant() for _ in range(5)]
    schemas = [m.tenant.schema for m in made] + ["tenant_no_such_schema"]
    monkeypatch.setattr(verification, "BATCH", 2)
    statements: list[str] = []

    def capture(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    event.listen(operator_engine, "before_cursor_execute", capture)
    try:
        with operator_engine.connect() as conn:
            found = verification.applied_versions(conn, schemas)
    finally:
        event.remove(operator_engine, "before_cursor_execute", capture)
    assert found == {m.tenant.schema: m.tenant.version for m in made}
    assert len([s for s in statements if "pg_namespace" in s]) == 1
    unions = [s for s in statements if "alembic_version" in s]
    assert len(unions) == 3  # ceil(5 / 2): the missing schema is left out by the catalog query
    assert all(s.count(" UNION ALL ") <= 1 for s in unions)
