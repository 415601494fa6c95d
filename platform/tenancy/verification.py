"""Which migration each tenant schema really has, against what the registry says.

The registry's ``version`` column lets ``migrate`` find the tenants behind head with one
query, but a schema can move without it (an Alembic command run by hand, a restore).
Here every schema's applied version is read in one catalog query plus one statement per
``BATCH`` schemas, never one per schema: over 10,000 tenants that is 21 round trips.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, bindparam, select, update

from atrium.platform.db.alembic_runner import VERSION_TABLE, head_revision
from atrium.platform.db.binding import applied_versions_sql
from atrium.platform.tenancy.registry import Tenant

# Schemas read per statement. Each read table stays locked (AccessShareLock) until its
# transaction ends, and the server's lock table holds about 64 per connection by default:
# every batch commits on its own so no transaction holds more than this many.
BATCH = 500


@dataclass(frozen=True, slots=True)
class TenantVersion:
    slug: str
    schema: str
    recorded: str | None  # the registry's version
    applied: str | None  # the schema's, None without a version table (or an empty one)
    has_version_table: bool

    @property
    def agrees(self) -> bool:
        return self.has_version_table and self.recorded == self.applied

    @property
    def problem(self) -> str | None:
        if not self.has_version_table:
            return "the schema has no version table"
        if self.recorded != self.applied:
            return f"registry says {self.recorded or 'none'}, schema is at {self.applied or 'none'}"
        return None


@dataclass(slots=True)
class VerificationReport:
    head: str
    tenants: list[TenantVersion] = field(default_factory=list)
    # Slugs whose registry version was set to the schema's (--repair).
    repaired: list[str] = field(default_factory=list)

    @property
    def differing(self) -> list[TenantVersion]:
        return [t for t in self.tenants if not t.agrees]

    @property
    def unresolved(self) -> list[TenantVersion]:
        """What still differs after a repair: schemas without a version table."""
        repaired = set(self.repaired)
        return [t for t in self.differing if t.slug not in repaired or not t.has_version_table]


def applied_versions(conn: Connection, schemas: Sequence[str]) -> dict[str, str | None]:
    """Each schema's applied revision; a schema without a version table is left out.

    ``conn`` is committed after every batch (see ``BATCH``), so call it outside any
    transaction of the caller's.
    """
    with_table = set(
        conn.exec_driver_sql(
            "SELECT n.nspname FROM pg_catalog.pg_namespace n"
            " JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid"
            " WHERE c.relname = %(table)s AND c.relkind IN ('r', 'p') AND n.nspname = ANY(%(schemas)s)",
            {"table": VERSION_TABLE, "schemas": list(schemas)},
        ).scalars()
    )
    conn.commit()
    present = [s for s in schemas if s in with_table]
    found: dict[str, str | None] = dict.fromkeys(present)
    for start in range(0, len(present), BATCH):
        batch = present[start : start + BATCH]
        for position, version in conn.exec_driver_sql(applied_versions_sql(batch, VERSION_TABLE)):
            found[batch[position]] = version
        conn.commit()
    return found


def verify_tenants(
    engine: Engine, repair: bool = False, version_locations: tuple[str, ...] = ()
) -> VerificationReport:
    """Compare every tenant's registry version with its schema's; with ``repair``, record
    the schema's version in the registry where they differ."""
    report = VerificationReport(head=head_revision("tenant", version_locations))
    with engine.connect() as conn:
        registered = conn.execute(
            select(Tenant.slug, Tenant.schema_name, Tenant.version).order_by(Tenant.slug)
        ).all()
        conn.commit()
        applied = applied_versions(conn, [r.schema_name for r in registered])
    report.tenants = [
        TenantVersion(r.slug, r.schema_name, r.version, applied.get(r.schema_name), r.schema_name in applied)
        for r in registered
    ]
    if repair:
        report.repaired = record_versions(
            engine, {t.slug: t.applied for t in report.differing if t.recorded != t.applied}
        )
    return report


def record_versions(engine: Engine, versions: dict[str, str | None]) -> list[str]:
    """Set the registry's version of each slug; returns the slugs written."""
    if not versions:
        return []
    statement = (
        update(Tenant)
        .where(Tenant.slug == bindparam("target_slug"))
        .values(version=bindparam("applied_version"))
        .execution_options(synchronize_session=False)
    )
    with engine.begin() as conn:
        conn.execute(
            statement,
            [{"target_slug": slug, "applied_version": version} for slug, version in versions.items()],
        )
    return sorted(versions)
