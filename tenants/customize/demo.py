"""A sample customization document for a demo tenant (platform/tenancy/demo.py)."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.customize.models import Customize


def seed(conn: Connection, demo: DemoTenant) -> None:
    conn.execute(
        insert(Customize).values(
            data={"theme": "light", "locale": "en-GB", "home": "/users"}, tenant_id=demo.tenant_id
        )
    )
