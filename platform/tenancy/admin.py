"""Registry operations behind the operator commands: list, show, suspend, domains.

Every change is committed first and then published, so that app processes drop their
cached view of the tenant (see ``atrium.platform.resolution``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import psycopg.errors
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from atrium.platform.tenancy.errors import InvalidInput, ProvisioningError
from atrium.platform.tenancy.naming import validate_domain
from atrium.platform.tenancy.registry import Tenant, TenantDomain, TenantStatus


class TenantNotFound(ProvisioningError):
    pass


@dataclass(slots=True)
class TenantView:
    id: uuid.UUID
    slug: str
    name: str
    schema: str
    status: str
    owner_id: uuid.UUID | None
    version: str | None
    domains: list[str] = field(default_factory=list)


_COLUMNS = (
    Tenant.id,
    Tenant.slug,
    Tenant.name,
    Tenant.schema_name,
    Tenant.status,
    Tenant.owner_id,
    Tenant.version,
)


def list_tenants(engine: Engine) -> list[TenantView]:
    with engine.connect() as conn:
        rows = conn.execute(select(*_COLUMNS).order_by(Tenant.slug)).all()
        domains: dict[uuid.UUID, list[str]] = {}
        for tenant_id, domain in conn.execute(
            select(TenantDomain.tenant_id, TenantDomain.domain).order_by(TenantDomain.domain)
        ):
            domains.setdefault(tenant_id, []).append(domain)
    return [TenantView(*row, domains=domains.get(row[0], [])) for row in rows]


def get_tenant(engine: Engine, slug: str) -> TenantView:
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(Tenant.slug == slug)).one_or_none()
        if row is None:
            raise TenantNotFound(f"tenant {slug!r} not found")
        domains = conn.scalars(
            select(TenantDomain.domain).where(TenantDomain.tenant_id == row[0]).order_by(TenantDomain.domain)
        ).all()
    return TenantView(*row, domains=list(domains))


def set_status(engine: Engine, slug: str, status: TenantStatus) -> uuid.UUID:
    with engine.begin() as conn:
        # A tenant being deleted stays so: resuming it would serve a schema about to vanish.
        tenant_id = conn.scalar(
            update(Tenant)
            .where(Tenant.slug == slug, Tenant.status != TenantStatus.DELETING)
            .values(status=status)
            .returning(Tenant.id)
        )
    if tenant_id is None:
        raise TenantNotFound(f"tenant {slug!r} not found (or being deleted)")
    return tenant_id


def add_domain(engine: Engine, slug: str, domain: str, base_domain: str) -> uuid.UUID:
    domain = validate_domain(domain)
    if domain == base_domain or domain.endswith("." + base_domain):
        raise InvalidInput(f"{domain!r} is under the base domain {base_domain!r}; tenants get those by slug")
    try:
        with engine.begin() as conn:
            # A tenant being deleted takes no new domain, as it takes no status change.
            tenant_id = conn.scalar(
                select(Tenant.id).where(Tenant.slug == slug, Tenant.status != TenantStatus.DELETING)
            )
            if tenant_id is None:
                raise TenantNotFound(f"tenant {slug!r} not found (or being deleted)")
            conn.execute(insert(TenantDomain).values(tenant_id=tenant_id, domain=domain))
    except IntegrityError as exc:
        if isinstance(exc.orig, psycopg.errors.UniqueViolation):
            raise ProvisioningError(f"domain {domain!r} is already registered") from None
        raise
    return tenant_id


def remove_domain(engine: Engine, slug: str, domain: str) -> uuid.UUID:
    domain = validate_domain(domain)
    with engine.begin() as conn:
        tenant_id = conn.scalar(select(Tenant.id).where(Tenant.slug == slug))
        if tenant_id is None:
            raise TenantNotFound(f"tenant {slug!r} not found")
        removed = conn.execute(
            delete(TenantDomain).where(TenantDomain.tenant_id == tenant_id, TenantDomain.domain == domain)
        ).rowcount
    if not removed:
        raise ProvisioningError(f"domain {domain!r} is not registered to tenant {slug!r}")
    return tenant_id
