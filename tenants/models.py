"""Every tenant table: importing the areas imports each one's models; the platform's own
tables inside each tenant schema (idempotency keys) are imported here."""

from atrium.tenants.areas import areas
from atrium.tenants.base import TenantBase, TenantTable, tenant_metadata
from atrium.tenants.idempotency_keys import IdempotencyKey

areas()

__all__ = ["IdempotencyKey", "TenantBase", "TenantTable", "tenant_metadata"]
