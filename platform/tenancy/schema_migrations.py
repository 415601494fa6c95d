"""Migrating many tenant schemas: bounded concurrency, one transaction per tenant.

Which tenants are behind is decided by the versions their schemas really have, read
for all of them in one catalog query and one statement per few hundred schemas
(verification.py), never by the registry's ``version`` column alone: a schema moved by
hand must not be called current. The registry is updated in the same transaction that
migrates the schema, and set to the real version of the tenants already at head. Each tenant runs under a
lock timeout and a per-schema advisory lock, so two runs never migrate one schema at
once (the second waits, then finds nothing to do). A failing tenant is recorded and
the others go on.

Concurrency uses processes, not threads: Alembic's ``context`` and ``op`` are
module-level proxies, so two migrations in one process would share them.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace

from sqlalchemy import Engine, select, text, update

from atrium.platform.db.alembic_runner import current_revision, head_revision, run_upgrade
from atrium.platform.db.deadlocks import retry_deadlocked
from atrium.platform.db.engines import create_operator_engine
from atrium.platform.settings import Settings
from atrium.platform.tenancy.admin import TenantNotFound
from atrium.platform.tenancy.registry import Tenant
from atrium.platform.tenancy.verification import applied_versions, record_versions

DEFAULT_CONCURRENCY = 4
LOCK_TIMEOUT = "5s"
# A server connection caches the catalog entries of every schema it touched, and each
# DDL statement anywhere makes it process invalidations against all of them: a worker
# that migrated thousands of schemas on one connection slows down linearly (see
# bench/RESULTS.md). A fresh connection every so many tenants keeps the cost flat.
TENANTS_PER_CONNECTION = 200


@dataclass(frozen=True, slots=True)
class TenantRef:
    id: uuid.UUID
    slug: str
    schema: str
    version: str | None


@dataclass(slots=True)
class TenantOutcome:
    slug: str
    from_version: str | None
    to_version: str | None
    ok: bool
    error: str | None = None
    seconds: float = 0.0


@dataclass(slots=True)
class MigrationReport:
    head: str
    current: list[str] = field(default_factory=list)
    outcomes: list[TenantOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[TenantOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def upgraded(self) -> list[TenantOutcome]:
        return [o for o in self.outcomes if o.ok]


def select_tenants(engine: Engine, slugs: Sequence[str] | None) -> list[TenantRef]:
    query = select(Tenant.id, Tenant.slug, Tenant.schema_name, Tenant.version).order_by(Tenant.slug)
    if slugs:
        query = query.where(Tenant.slug.in_(list(slugs)))
    with engine.connect() as conn:
        refs = [TenantRef(*row) for row in conn.execute(query)]
    missing = sorted(set(slugs or ()) - {r.slug for r in refs})
    if missing:
        raise TenantNotFound(f"tenant not found: {', '.join(missing)}")
    return refs


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    message = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {message[0] if message else ''}".strip()


def migrate_one(
    engine: Engine, tenant: TenantRef, head: str, version_locations: tuple[str, ...] = ()
) -> TenantOutcome:
    started = time.perf_counter()

    def upgrade() -> tuple[str | None, str | None]:
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"atrium:migrate:{tenant.schema}"},
            )
            before = current_revision(conn, tenant.schema)
            run_upgrade(conn, "tenant", tenant.schema, head, version_locations)
            after = current_revision(conn, tenant.schema)
            conn.execute(update(Tenant).where(Tenant.id == tenant.id).values(version=after))
        return before, after

    try:
        before, after = retry_deadlocked(upgrade)
    except Exception as exc:  # one tenant's failure must not stop the others
        return TenantOutcome(
            tenant.slug, tenant.version, tenant.version, False, _one_line(exc), time.perf_counter() - started
        )
    return TenantOutcome(tenant.slug, before, after, True, None, time.perf_counter() - started)


_worker_engine: Engine | None = None
_worker_migrated = 0


def _init_worker(settings: Settings) -> None:
    global _worker_engine  # one engine per worker process, made after the fork
    _worker_engine = create_operator_engine(settings, pool_size=1)


def _migrate_in_worker(tenant: TenantRef, head: str, version_locations: tuple[str, ...]) -> TenantOutcome:
    global _worker_migrated
    assert _worker_engine is not None
    _worker_migrated += 1
    if _worker_migrated % TENANTS_PER_CONNECTION == 0:
        _worker_engine.dispose()
    return migrate_one(_worker_engine, tenant, head, version_locations)


def refresh_catalog_statistics(engine: Engine) -> None:
    """``ANALYZE`` the catalogs Alembic's version-table lookup joins.

    Alembic asks whether ``<schema>.alembic_version`` exists with a ``pg_class`` ⋈
    ``pg_namespace`` query. With stale statistics (a catalog that grew by thousands of
    schemas since autovacuum last looked) PostgreSQL plans it name-first and walks every
    tenant's ``alembic_version`` row: 37 ms per lookup at 10,000 tenants, against well
    under a millisecond once analysed. Takes a fraction of a second; a role that may
    not analyse them gets a warning from the server, not an error.
    """
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE pg_catalog.pg_class, pg_catalog.pg_namespace")
        conn.commit()


def migrate_tenants(
    settings: Settings,
    engine: Engine,
    slugs: Sequence[str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    version_locations: tuple[str, ...] = (),
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[TenantOutcome], None] | None = None,
) -> MigrationReport:
    """Upgrade the named tenants (or all) to head; never raises for one tenant's failure."""
    started = time.perf_counter()
    head = head_revision("tenant", version_locations)
    registered = select_tenants(engine, slugs)
    with engine.connect() as conn:
        applied = applied_versions(conn, [t.schema for t in registered])
    tenants = [replace(t, version=applied.get(t.schema)) for t in registered]
    pending = [t for t in tenants if t.version != head]
    report = MigrationReport(head=head, current=[t.slug for t in tenants if t.version == head])
    # Already at head while its registry row says otherwise: the registry learns the truth.
    record_versions(
        engine,
        {r.slug: head for r, t in zip(registered, tenants, strict=True) if t.version == head != r.version},
    )
    if pending:
        refresh_catalog_statistics(engine)
    if on_start is not None:
        on_start(len(pending))
    workers = max(1, min(concurrency, len(pending)))
    if workers == 1:
        for tenant in pending:
            report.outcomes.append(migrate_one(engine, tenant, head, version_locations))
            if on_done is not None:
                on_done(report.outcomes[-1])
    elif pending:
        engine.dispose()  # no pooled socket may be inherited by the workers
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(settings,),
        ) as pool:
            futures = [pool.submit(_migrate_in_worker, t, head, version_locations) for t in pending]
            for future in as_completed(futures):
                outcome = future.result()
                report.outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)
    report.outcomes.sort(key=lambda o: o.slug)
    report.seconds = time.perf_counter() - started
    return report
