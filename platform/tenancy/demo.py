"""Sample data for a demo tenant: a small, coherent organisation to explore.

Each area brings its own sample rows (``Area.demo``), written here in one transaction in
the tenant's schema, identity's first: a later area may use what an earlier one made
through ``DemoTenant.made``. ``atrium serve`` seeds its demo tenant with it, and
``atrium tenants create --demo`` any new tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from atrium.platform.db.binding import set_transaction_search_path
from atrium.platform.security.passwords import generate_password, hash_password


@dataclass
class DemoTenant:
    tenant_id: uuid.UUID
    owner_id: uuid.UUID
    # One bcrypt hash for every sample user (their password is never shown: only the
    # owner logs in to a demo), made once because bcrypt is slow on purpose.
    password_hash: str
    # What earlier areas made, by name, for later ones to refer to.
    made: dict[str, Any] = field(default_factory=dict)


def seed_demo(
    engine: Engine, schema: str, tenant_id: uuid.UUID, owner_id: uuid.UUID, bcrypt_rounds: int
) -> None:
    from atrium.tenants.areas import areas

    demo = DemoTenant(tenant_id, owner_id, hash_password(generate_password(), bcrypt_rounds))
    with engine.begin() as conn:
        set_transaction_search_path(conn, schema)
        # Identity's first, whatever the names: the others' sample rows belong to its users.
        for area in sorted(areas(), key=lambda a: a.name != "identity"):
            if area.demo is not None:
                area.demo(conn, demo)
