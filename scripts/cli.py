"""``atrium``: the operator command line.

Errors are one line on stderr, never a traceback. Exit codes: 0 success, 1 failure,
2 bad usage or bad input. ``--json`` prints machine-readable output on stdout.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, NoReturn

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from atrium.platform.db import embedded
from atrium.platform.db.engines import create_operator_engine
from atrium.platform.security.passwords import PasswordRejected, generate_password
from atrium.platform.settings import Settings, SettingsError, load_settings
from atrium.platform.tenancy.errors import InvalidInput, ProvisioningError
from atrium.platform.tenancy.naming import InvalidName

EXIT_FAILURE = 1
EXIT_USAGE = 2


class OperatorError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def operator_settings(require_secret: bool = False) -> Settings:
    """Settings from the environment; without DATABASE_URL, the embedded database if any."""
    env = dict(os.environ)
    if not env.get("DATABASE_URL") and embedded.has_embedded_data():
        env["DATABASE_URL"] = embedded.start_embedded_postgres()
        env.setdefault("ATRIUM_SECRET_KEY", embedded.secret_key())
    port = embedded.served_port()
    if not env.get("ATRIUM_PUBLIC_PORT") and port is not None:
        env["ATRIUM_PUBLIC_PORT"] = str(port)
    return load_settings(env, require_secret=require_secret)


@contextmanager
def operator_engine(settings: Settings, pool_size: int = 2) -> Iterator[Engine]:
    engine = create_operator_engine(settings, pool_size=pool_size)
    try:
        yield engine
    finally:
        engine.dispose()


def emit(data: Any, as_json: bool, text: Callable[[], str]) -> None:
    click.echo(json.dumps(data, default=str, indent=2) if as_json else text())


def public_url(settings: Settings, slug: str, port: int | None = None) -> str:
    return settings.tenant_url(slug, port)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Operate an Atrium deployment: serve it, migrate it, manage its tenants."""


# --- serve -------------------------------------------------------------------------


def _proxy_addresses(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Each entry an IP address or network, or ``*``; uvicorn would take a typo as a
    literal that never matches, and every client would silently share the proxy's limits."""
    if value is None or not value.strip():
        return None
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise click.BadParameter(f"{entry!r} is not an IP address or network") from None
    return ",".join(entries)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--forwarded-allow-ips",
    envvar="ATRIUM_FORWARDED_ALLOW_IPS",
    callback=_proxy_addresses,
    help="Reverse proxies (comma-separated addresses or networks, or *) whose "
    "X-Forwarded-For names the client. Default: none; the peer is the client.",
)
def serve(host: str, port: int, workers: int, forwarded_allow_ips: str | None) -> None:
    """Run the API. Without DATABASE_URL, an embedded PostgreSQL under ./.atrium/ is used."""
    from atrium.scripts.serving import ensure_port_free, prepare_embedded, run_server

    ensure_port_free(host, port)  # before an embedded database is started for nothing
    if not os.environ.get("DATABASE_URL"):
        prepare_embedded(port)
    settings = load_settings()  # fail fast, with one line, before any worker starts
    if settings.base_domain == "localhost":
        # Reached on the port it is served on: the docs' server entry says so (workers
        # read it from the environment), unless ATRIUM_PUBLIC_PORT says otherwise.
        os.environ.setdefault("ATRIUM_PUBLIC_PORT", str(port))
    run_server(host, port, workers, forwarded_allow_ips)


# --- db ------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The platform (shared) schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the platform schema to head."""
    from atrium.platform.db.alembic_runner import head_revision, upgrade_platform

    settings = operator_settings()
    with operator_engine(settings) as engine, engine.begin() as conn:
        upgrade_platform(conn)
    click.echo(f"platform schema at {head_revision('platform')}")


# --- tenants -------------------------------------------------------------------------


@cli.group()
def tenants() -> None:
    """Provision, list, migrate, suspend and delete tenants."""


def _tenant_json(view: Any, settings: Settings) -> dict[str, Any]:
    return {
        "id": str(view.id),
        "slug": view.slug,
        "name": view.name,
        "schema": view.schema,
        "status": view.status,
        "owner_id": str(view.owner_id) if view.owner_id else None,
        "url": public_url(settings, view.slug),
        "version": view.version,
        "domains": list(getattr(view, "domains", [])),
    }


@functools.cache  # once per command: a delete publishes twice
def _warn_without_redis() -> None:
    # Done, but not yet seen: the servers learn of changes through Redis. Said on every
    # command that changes a tenant: a suspension that seems to have failed for half a
    # minute is worse.
    click.echo(
        "atrium: warning: REDIS_URL is not set, so running servers see this change only when "
        "their cached copy expires (ATRIUM_TENANT_CACHE_TTL, 30 s by default); set it to the "
        "servers' REDIS_URL to reach them at once",
        err=True,
    )


def _publish(settings: Settings, tenant_id: Any) -> None:
    from atrium.platform.tenancy.resolution import publish_tenant_change

    if not settings.redis_url:
        _warn_without_redis()
        return
    publish_tenant_change(settings.redis_url, tenant_id)


def _valid_slugs(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """A slug argument that cannot name a tenant is bad input (exit 2), not a tenant not
    found (exit 1)."""
    from atrium.platform.tenancy.naming import validate_slug

    for slug in value if isinstance(value, tuple) else (value,):
        validate_slug(slug)
    return value


@tenants.command("create")
@click.argument("slug", callback=_valid_slugs)
@click.option("--name", required=True, help="Display name of the organisation.")
@click.option("--owner-name", required=True)
@click.option("--owner-email", required=True)
@click.option("--owner-phone", required=True)
@click.option("--owner-password-stdin", is_flag=True, help="Read the owner's password from stdin.")
@click.option("--demo", is_flag=True, help="Add sample users, groups and rows to explore.")
@click.option("--json", "as_json", is_flag=True, help="Print the tenant as JSON.")
def tenants_create(
    slug: str,
    name: str,
    owner_name: str,
    owner_email: str,
    owner_phone: str,
    owner_password_stdin: bool,
    demo: bool,
    as_json: bool,
) -> None:
    """Provision a tenant: schema at head, owner user, built-in roles and group."""
    from atrium.platform.tenancy.provisioning import OwnerSpec, provision_tenant

    generated = not owner_password_stdin
    if owner_password_stdin:
        # Bytes, decoded strictly: the text stream's locale may read any byte (surrogates
        # that fail later), and a closed stdin is no stream at all.
        stream = getattr(sys.stdin, "buffer", None)
        try:
            password = (stream.readline() if stream is not None else b"").decode().rstrip("\r\n")
        except UnicodeDecodeError:
            raise OperatorError("the password on stdin is not UTF-8 text", EXIT_USAGE) from None
        if not password:
            raise OperatorError("no password on stdin", EXIT_USAGE)
    else:
        password = generate_password()
    settings = operator_settings()
    with operator_engine(settings) as engine:
        tenant = provision_tenant(
            engine,
            slug,
            name,
            OwnerSpec(owner_name, owner_email, owner_phone, password),
            bcrypt_rounds=settings.bcrypt_rounds,
            demo=demo,
        )
    _publish(settings, tenant.id)
    data = {
        "id": str(tenant.id),
        "slug": tenant.slug,
        "name": tenant.name,
        "schema": tenant.schema,
        "status": tenant.status,
        "owner_id": str(tenant.owner_id),
        "url": public_url(settings, tenant.slug),
        "version": tenant.version,
    }
    if generated:
        data["owner_password"] = password

    def text() -> str:
        lines = [f"created tenant {tenant.slug} ({tenant.name}) at {data['url']}"]
        lines += [f"  id: {tenant.id}", f"  schema: {tenant.schema}", f"  owner: {owner_email}"]
        if generated:
            lines.append(f"  owner password (shown once): {password}")
        return "\n".join(lines)

    emit(data, as_json, text)


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True)
def tenants_list(as_json: bool) -> None:
    """Every tenant with its status and migration version."""
    from atrium.platform.tenancy.admin import list_tenants

    settings = operator_settings()
    with operator_engine(settings) as engine:
        views = list_tenants(engine)
    rows = [_tenant_json(v, settings) for v in views]

    def text() -> str:
        if not rows:
            return "no tenants"
        return _table(
            ("slug", "status", "version", "name", "url", "domains"),
            [
                (r["slug"], r["status"], r["version"] or "-", r["name"], r["url"], _domains(r["domains"]))
                for r in rows
            ],
        )

    emit(rows, as_json, text)


@tenants.command("show")
@click.argument("slug", callback=_valid_slugs)
@click.option("--json", "as_json", is_flag=True)
def tenants_show(slug: str, as_json: bool) -> None:
    """One tenant, its domains and its version."""
    from atrium.platform.tenancy.admin import get_tenant

    settings = operator_settings()
    with operator_engine(settings) as engine:
        data = _tenant_json(get_tenant(engine, slug), settings)
    fields = {**data, "version": data["version"] or "-", "owner_id": data["owner_id"] or "-"}
    fields["domains"] = _domains(data["domains"])
    emit(data, as_json, lambda: _table(("field", "value"), [(k, str(v)) for k, v in fields.items()]))


def _domains(domains: list[str]) -> str:
    return ", ".join(domains) or "-"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A rich table with a header row: coloured on a terminal, plain and never wrapped when
    piped (a log or ``grep`` gets whole lines)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers, box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for row in rows:
        # Text, not markup: a tenant's name could hold rich's [tags].
        table.add_row(*(Text(cell) for cell in row))
    terminal = sys.stdout.isatty()
    console = Console(width=None if terminal else 10_000, no_color=not terminal, highlight=False)
    with console.capture() as captured:
        console.print(table)
    return "\n".join(line.rstrip() for line in captured.get().splitlines()).strip("\n")


@tenants.command("migrate")
@click.argument("slugs", nargs=-1, callback=_valid_slugs)
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--json", "as_json", is_flag=True)
def tenants_migrate(slugs: tuple[str, ...], concurrency: int, as_json: bool) -> None:
    """Upgrade the named tenants (or all) to head; continues past failures."""
    from atrium.platform.tenancy.schema_migrations import migrate_tenants

    settings = operator_settings()
    with (
        operator_engine(settings, pool_size=min(concurrency, 8)) as engine,
        _progress(not as_json) as progress,
    ):
        report = migrate_tenants(
            settings,
            engine,
            slugs or None,
            concurrency=concurrency,
            on_start=progress.start,
            on_done=progress.advance,
        )
    data = {
        "head": report.head,
        "seconds": round(report.seconds, 3),
        "already_current": len(report.current),
        "upgraded": [asdict(o) for o in report.upgraded],
        "failed": [asdict(o) for o in report.failures],
    }

    def text() -> str:
        lines = [
            f"head {report.head}: {len(report.upgraded)} upgraded, {len(report.current)} already current, "
            f"{len(report.failures)} failed ({report.seconds:.2f}s)"
        ]
        lines += [f"  FAILED {o.slug}: {o.error}" for o in report.failures]
        return "\n".join(lines)

    if report.upgraded:
        # A migration may change what the built-in roles grant (role_grants.py): the app
        # processes drop their remembered callers (and hosts) rather than serve the old
        # permissions until their TTL. One message for all: migrations are rare.
        from atrium.platform.tenancy.resolution import ALL_TENANTS

        _publish(settings, ALL_TENANTS)
    emit(data, as_json, text)
    if report.failures:
        names = ", ".join(o.slug for o in report.failures)
        raise OperatorError(f"{len(report.failures)} tenant(s) failed to migrate: {names}")


@tenants.command("verify")
@click.option("--repair", is_flag=True, help="Record each schema's real version in the registry.")
@click.option("--json", "as_json", is_flag=True)
def tenants_verify(repair: bool, as_json: bool) -> None:
    """Compare every tenant schema's applied migration with the registry; exit 1 if any differ."""
    from atrium.platform.tenancy.verification import verify_tenants

    settings = operator_settings()
    with operator_engine(settings) as engine:
        report = verify_tenants(engine, repair=repair)
    repaired = set(report.repaired)
    differing = [
        {
            "slug": t.slug,
            "schema": t.schema,
            "registry_version": t.recorded,
            "schema_version": t.applied,
            "version_table": t.has_version_table,
            "problem": t.problem,
            "repaired": t.slug in repaired,
        }
        for t in report.differing
    ]
    data = {"head": report.head, "checked": len(report.tenants), "differing": differing}

    def text() -> str:
        summary = f"{len(report.tenants)} tenant(s) checked, {len(differing)} differ from the registry"
        if repair:
            summary += f", {len(repaired)} repaired"
        return summary if not differing else "\n".join([_verify_table(differing), summary])

    emit(data, as_json, text)
    unresolved = report.unresolved
    if unresolved:
        names = ", ".join(t.slug for t in unresolved[:10])
        more = f" and {len(unresolved) - 10} more" if len(unresolved) > 10 else ""
        action = "" if repair else " (--repair records the schemas' versions)"
        raise OperatorError(f"{len(unresolved)} tenant(s) differ from the registry: {names}{more}{action}")


def _verify_table(rows: list[dict[str, Any]]) -> str:
    return _table(
        ("slug", "registry", "schema", "problem"),
        [
            (
                r["slug"],
                r["registry_version"] or "-",
                r["schema_version"] or "-",
                r["problem"] + (" (repaired)" if r["repaired"] else ""),
            )
            for r in rows
        ],
    )


class _Progress:
    """A rich progress bar on a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        if self.enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._bar = Progress(
                "migrating",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task("migrate", total=total)

    def advance(self, _outcome: Any) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextmanager
def _progress(enabled: bool) -> Iterator[_Progress]:
    progress = _Progress(enabled)
    try:
        yield progress
    finally:
        progress.close()


def _status_command(slug: str, suspend: bool) -> None:
    from atrium.platform.tenancy.admin import set_status
    from atrium.platform.tenancy.registry import TenantStatus

    settings = operator_settings()
    status = TenantStatus.SUSPENDED if suspend else TenantStatus.ACTIVE
    with operator_engine(settings) as engine:
        tenant_id = set_status(engine, slug, status)
    _publish(settings, tenant_id)
    click.echo(f"tenant {slug} {'suspended' if suspend else 'resumed'}")


@tenants.command("suspend")
@click.argument("slug", callback=_valid_slugs)
def tenants_suspend(slug: str) -> None:
    """Block all access to a tenant."""
    _status_command(slug, suspend=True)


@tenants.command("resume")
@click.argument("slug", callback=_valid_slugs)
def tenants_resume(slug: str) -> None:
    """Restore access to a suspended tenant."""
    _status_command(slug, suspend=False)


@tenants.command("delete")
@click.argument("slug", callback=_valid_slugs)
@click.option("--yes", is_flag=True, help="Confirm: the tenant's schema and all its data are dropped.")
def tenants_delete(slug: str, yes: bool) -> None:
    """Remove a tenant and its schema (irreversible)."""
    from atrium.platform.tenancy.provisioning import delete_tenant

    if not yes:
        raise OperatorError(f"refusing to delete tenant {slug!r} and all its data without --yes", EXIT_USAGE)
    settings = operator_settings()
    from atrium.platform.tenancy.resolution import FALLBACK_TTL

    with operator_engine(settings) as engine:
        # Processes that miss the announcement drop their cached view within FALLBACK_TTL.
        delete_tenant(engine, slug, lambda tenant_id: _publish(settings, tenant_id), FALLBACK_TTL)
    click.echo(f"tenant {slug} deleted")


@tenants.group("domains")
def domains() -> None:
    """Custom domains of a tenant."""


@domains.command("add")
@click.argument("slug", callback=_valid_slugs)
@click.argument("domain")
def domains_add(slug: str, domain: str) -> None:
    """Serve a tenant at a custom domain too."""
    from atrium.platform.tenancy.admin import add_domain

    settings = operator_settings()
    with operator_engine(settings) as engine:
        tenant_id = add_domain(engine, slug, domain, settings.base_domain)
    _publish(settings, tenant_id)
    click.echo(f"domain {domain.lower().rstrip('.')} added to {slug}")


@domains.command("remove")
@click.argument("slug", callback=_valid_slugs)
@click.argument("domain")
def domains_remove(slug: str, domain: str) -> None:
    """Stop serving a tenant at a custom domain."""
    from atrium.platform.tenancy.admin import remove_domain

    settings = operator_settings()
    with operator_engine(settings) as engine:
        tenant_id = remove_domain(engine, slug, domain)
    _publish(settings, tenant_id)
    click.echo(f"domain {domain.lower().rstrip('.')} removed from {slug}")


# --- entry point -----------------------------------------------------------------------


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"atrium: error: {message}", err=True)
    sys.exit(code)


def _platform_schema_missing(exc: DBAPIError) -> bool:
    """A fresh database: the registry tables are not there before ``db upgrade``."""
    from psycopg.errors import InvalidSchemaName, UndefinedTable

    return isinstance(exc.orig, UndefinedTable | InvalidSchemaName) and '"platform' in str(exc.orig)


def _platform_behind() -> str | None:
    """The platform schema's revision when it is not this atrium's head (a database an
    older release upgraded), else None, also when it cannot be read: said on a database
    error, whose SQL would otherwise be all the operator sees."""
    from atrium.platform.db.alembic_runner import current_revision, head_revision
    from atrium.platform.tenancy.naming import PLATFORM_SCHEMA

    try:
        engine = create_operator_engine(operator_settings(), pool_size=1)
        try:
            with engine.connect() as conn:
                applied = current_revision(conn, PLATFORM_SCHEMA)
        finally:
            engine.dispose()
    except Exception:
        return None
    return applied if applied is not None and applied != head_revision("platform") else None


def main(argv: list[str] | None = None) -> None:
    """Run the command line; every error becomes one line on stderr and an exit code."""
    from atrium.platform.tenancy.admin import TenantNotFound

    try:
        code = cli.main(args=argv, prog_name="atrium", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        sys.exit(EXIT_USAGE)
    except click.UsageError as exc:
        _fail(exc.format_message().replace("\n", " "), EXIT_USAGE)
    except click.Abort:
        _fail("aborted", EXIT_FAILURE)
    except OperatorError as exc:
        _fail(str(exc), exc.exit_code)
    except (SettingsError, InvalidName, InvalidInput, PasswordRejected) as exc:
        _fail(str(exc), EXIT_USAGE)
    except (TenantNotFound, ProvisioningError) as exc:
        _fail(str(exc), EXIT_FAILURE)
    except (OperationalError, DBAPIError) as exc:
        if _platform_schema_missing(exc):
            _fail("the platform schema is missing: run `atrium db upgrade` first", EXIT_FAILURE)
        if (behind := _platform_behind()) is not None:
            _fail(
                f"the platform schema is at {behind}, not this atrium's: run `atrium db upgrade`",
                EXIT_FAILURE,
            )
        first = str(exc.orig or exc).strip().splitlines()
        _fail(f"database error: {first[0] if first else type(exc).__name__}", EXIT_FAILURE)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:
        _fail(
            f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", EXIT_FAILURE
        )
    sys.exit(code if isinstance(code, int) else 0)
