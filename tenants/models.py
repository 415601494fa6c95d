"""Every tenant table, imported so that ``tenant_metadata`` is complete."""

from atrium.tenants.base import TenantBase, TenantTable, tenant_metadata
from atrium.tenants.customize.models import Customize
from atrium.tenants.idempotency_keys import IdempotencyKey
from atrium.tenants.identity.models import User, UserGroup, UserMeta, UserRole
from atrium.tenants.media.models import Media

__all__ = [
    "Customize",
    "IdempotencyKey",
    "Media",
    "TenantBase",
    "TenantTable",
    "User",
    "UserGroup",
    "UserMeta",
    "UserRole",
    "tenant_metadata",
]
