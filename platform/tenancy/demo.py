"""Sample data for a demo tenant: a small, coherent organisation to explore.

Each area brings its own sample rows (``Area.demo``), written here in the transaction that
provisions the tenant, in its schema, identity's first: a later area may use what an earlier one made
through ``DemoTenant.made``. ``atrium serve`` seeds its demo tenant with it, and
``atrium tenants create --demo`` any new tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

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


def demo_password_hash(bcrypt_rounds: int) -> str:
    """The sample users' one hash: made before the transaction, as bcrypt is slow."""
    return hash_password(generate_password(), bcrypt_rounds)


def add_demo(conn: Connection, demo: DemoTenant) -> None:
    """Every area's sample rows, in the transaction that provisions the tenant (bound to
    its schema): a tenant is made with its demo or not at all."""
    from atrium.tenants.areas import areas

    # Identity's first, whatever the names: the others' sample rows belong to its users.
    for area in sorted(areas(), key=lambda a: a.name != "identity"):
        if area.demo is not None:
            area.demo(conn, demo)
