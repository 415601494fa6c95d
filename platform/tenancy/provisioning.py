"""Creating and deleting tenants.

Provisioning is one transaction: the registry row, the schema, its tables at the head
revision, the built-in roles and group, and the owner user. A failure anywhere leaves
nothing behind. The registry row is inserted first, so a concurrent creation of the
same slug waits on the unique index and then fails cleanly.

Tables are created from the models and the Alembic head is stamped (the fast path);
``test_fast_path_equals_running_every_migration`` in tests/test_provisioning.py proves
this yields exactly the schema that running every migration yields. The schema and its
DDL go through ``atrium.platform.db.binding``, one statement per message.
"""

from __future__ import annotations

import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import psycopg.errors
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.schema import CreateIndex, CreateTable

from atrium.platform.db.alembic_runner import VERSION_TABLE, head_revision
from atrium.platform.db.binding import create_tenant_schema, drop_tenant_schema
from atrium.platform.db.deadlocks import is_deadlock, retry_deadlocked
from atrium.platform.security import permissions
from atrium.platform.security.passwords import hash_password
from atrium.platform.tenancy.demo import DemoTenant, add_demo, demo_password_hash
from atrium.platform.tenancy.errors import InvalidInput, ProvisioningError
from atrium.platform.tenancy.naming import schema_for_slug, validate_slug
from atrium.platform.tenancy.registry import Tenant, TenantStatus
from atrium.platform.web.bodies import NAME_RULE, is_name
from atrium.tenants.identity.models import User, UserGroup, UserMeta, UserRole
from atrium.tenants.models import tenant_metadata

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
LOCK_TIMEOUT = "5s"


class TenantExists(ProvisioningError):
    pass


@dataclass(frozen=True, slots=True)
class OwnerSpec:
    name: str
    email: str
    phone: str
    password: str


@dataclass(frozen=True, slots=True)
class ProvisionedTenant:
    id: uuid.UUID
    slug: str
    name: str
    schema: str
    status: str
    owner_id: uuid.UUID
    version: str


def validate_owner(owner: OwnerSpec) -> None:
    if not owner.name.strip() or len(owner.name) > 200:
        raise InvalidInput("owner name must be 1-200 characters")
    if not is_name(owner.name):  # the API's own rule for a user's name
        raise InvalidInput(f"owner name must be {NAME_RULE}")
    if len(owner.email) > 320 or not _EMAIL.match(owner.email):
        raise InvalidInput(f"invalid owner email {owner.email!r}")
    if not owner.phone.strip() or len(owner.phone) > 50:
        raise InvalidInput("owner phone must be 1-50 characters")


@cache
def tenant_tables_ddl() -> tuple[str, ...]:
    """CREATE statements for every tenant table and the Alembic version table.

    Names are unqualified: they land in the schema that the transaction's
    ``search_path`` names. The version table matches the one Alembic creates.
    """
    dialect = postgresql.dialect()
    statements: list[str] = []
    for table in tenant_metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    statements.append(
        f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
        f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
    )
    return tuple(statements)


def create_tenant_tables(connection: Connection, schema: str, head: str) -> None:
    """Create ``schema`` with its tables at ``head``; the caller holds the transaction."""
    create_tenant_schema(connection, schema, tenant_tables_ddl())
    connection.exec_driver_sql(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (%(head)s)", {"head": head})


def seed_tenant(connection: Connection, owner: OwnerSpec, password_hash: str) -> uuid.UUID:
    """The owner user, the built-in roles and group, and the owner's link to ``Owner``."""
    owner_id = uuid.uuid4()
    connection.execute(
        insert(User).values(
            id=owner_id, name=owner.name, email=owner.email, phone=owner.phone, password=password_hash
        )
    )
    role_ids = {name: uuid.uuid4() for name in permissions.builtin_roles()}
    connection.execute(
        insert(UserRole),
        [
            {"id": role_ids[name], "name": name, "owner_id": owner_id, "permissions": perms}
            for name, perms in permissions.builtin_roles().items()
        ],
    )
    group_id = uuid.uuid4()
    connection.execute(
        insert(UserGroup).values(id=group_id, name=permissions.EVERYONE_GROUP, owner_id=owner_id)
    )
    connection.execute(
        insert(UserMeta).values(
            owner_id=owner_id, user_groups=group_id, user_roles=role_ids[permissions.OWNER_ROLE]
        )
    )
    return owner_id


@contextmanager
def _fresh_backend_afterwards(conn: Connection) -> Iterator[None]:
    """Close the server connection after provisioning instead of pooling it.

    A backend that has created many schemas spends most of its time processing catalog
    invalidations for every relation it ever made (bench/RESULTS.md: 16 ms per tenant at
    first, 310 ms after 3,000 on one connection); a new one costs a few milliseconds.
    """
    try:
        yield
    finally:
        conn.invalidate()


def _refusal(exc: Exception, slug: str, schema: str) -> ProvisioningError | None:
    """What a provisioning statement's integrity error means to the operator; None for
    anything else. The registry row is inserted first, so a duplicate slug fails there."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, psycopg.errors.DuplicateSchema):
        return TenantExists(
            f"schema {schema!r} exists without a tenant in the registry (left from an earlier one?): "
            "drop it, or restore its tenant, before creating this one"
        )
    if not isinstance(orig, psycopg.errors.UniqueViolation):
        return None
    if orig.diag.table_name == Tenant.__tablename__:
        return TenantExists(f"tenant {slug!r} already exists")
    if orig.diag.table_name == "users":
        return InvalidInput(
            "the owner's email is one of the demo's sample users: choose another, or leave out --demo"
        )
    return None


def provision_tenant(
    engine: Engine, slug: str, name: str, owner: OwnerSpec, *, bcrypt_rounds: int = 12, demo: bool = False
) -> ProvisionedTenant:
    """The tenant, its schema at head, owner, built-in roles and group, and with ``demo``
    its sample rows: all in one transaction, so an interruption leaves nothing behind."""
    validate_slug(slug)
    schema = schema_for_slug(slug)
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("tenant name must be 1-200 characters")
    if any(unicodedata.category(char).startswith("C") for char in name):
        raise InvalidInput("tenant name must be one line of printable characters")
    validate_owner(owner)
    # Hash before the transaction opens: bcrypt is slow and must not hold locks.
    password_hash = hash_password(owner.password, bcrypt_rounds)
    sample_hash = demo_password_hash(bcrypt_rounds) if demo else None
    head = head_revision("tenant")
    tenant_id = uuid.uuid4()
    try:
        with engine.connect() as conn, _fresh_backend_afterwards(conn), conn.begin():
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute(
                insert(Tenant).values(
                    id=tenant_id,
                    slug=slug,
                    name=name,
                    schema_name=schema,
                    status=TenantStatus.ACTIVE,
                    version=head,
                )
            )
            create_tenant_tables(conn, schema, head)
            owner_id = seed_tenant(conn, owner, password_hash)
            conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(owner_id=owner_id))
            if sample_hash is not None:
                add_demo(conn, DemoTenant(tenant_id, owner_id, sample_hash))
    except (IntegrityError, ProgrammingError) as exc:
        if (refusal := _refusal(exc, slug, schema)) is not None:
            raise refusal from None
        raise
    return ProvisionedTenant(
        id=tenant_id,
        slug=slug,
        name=name,
        schema=schema,
        status=TenantStatus.ACTIVE,
        owner_id=owner_id,
        version=head,
    )


def delete_tenant(
    engine: Engine,
    slug: str,
    announce: Callable[[uuid.UUID], None] | None = None,
    drain_seconds: float = 0.0,
) -> uuid.UUID:
    """Delete a tenant in two steps; returns its id.

    First it is marked ``deleting`` and that is committed and ``announce``d (published to
    the app processes), so its hosts answer 404 before anything is dropped; after
    ``drain_seconds`` (how long a process may take to hear of it) the schema and the
    registry row are dropped together. A drop that fails leaves the tenant marked, still
    answering 404, for the command to be run again.
    """
    with engine.begin() as conn:
        tenant_id = conn.scalar(
            update(Tenant)
            .where(Tenant.slug == slug)
            .values(status=TenantStatus.DELETING)
            .returning(Tenant.id)
        )
    if tenant_id is None:
        raise ProvisioningError(f"tenant {slug!r} not found")
    if announce is not None:
        announce(tenant_id)
    if drain_seconds > 0:
        time.sleep(drain_seconds)

    def drop() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            row = conn.execute(
                select(Tenant.id, Tenant.schema_name).where(Tenant.id == tenant_id).with_for_update()
            ).one_or_none()
            if row is None:  # deleted meanwhile by another run of the command
                return
            drop_tenant_schema(conn, row.schema_name)
            conn.execute(delete(Tenant).where(Tenant.id == row.id))

    try:
        retry_deadlocked(drop)
    except OperationalError as exc:
        if isinstance(exc.orig, psycopg.errors.LockNotAvailable) or is_deadlock(exc):
            raise ProvisioningError(
                f"tenant {slug!r} is busy (locked); it stays marked for deletion, run the command again"
            ) from None
        raise
    if announce is not None:
        announce(tenant_id)
    return tenant_id
