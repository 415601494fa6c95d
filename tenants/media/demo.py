"""A sample file for a demo tenant (platform/tenancy/demo.py)."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.media.models import Media

WELCOME = b"Welcome to the demo organisation. Upload your own files with POST /media.\n"


def seed(conn: Connection, demo: DemoTenant) -> None:
    conn.execute(
        insert(Media).values(
            owner_id=demo.owner_id, name="welcome.txt", type="text/plain", size=len(WELCOME), data=WELCOME
        )
    )
