"""Every tenant table: importing the areas imports each one's models."""

from atrium.tenants.areas import areas
from atrium.tenants.base import TenantBase, TenantTable, tenant_metadata

areas()

__all__ = ["TenantBase", "TenantTable", "tenant_metadata"]
