"""Sample users, groups and links for a demo tenant (platform/tenancy/demo.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, insert, select

from atrium.platform.security import permissions
from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.identity.models import User, UserGroup, UserMeta, UserRole

PEOPLE = [
    ("Ada Park", "ada@demo.example", "Engineering", permissions.ADMIN_ROLE),
    ("Ben Ortiz", "ben@demo.example", "Engineering", permissions.MEMBER_ROLE),
    ("Chloe Nguyen", "chloe@demo.example", "Support", permissions.MEMBER_ROLE),
    ("Dev Patel", "dev@demo.example", "Support", permissions.MEMBER_ROLE),
]


def seed(conn: Connection, demo: DemoTenant) -> None:
    roles = dict(conn.execute(select(UserRole.name, UserRole.id)).all())
    groups = {name: uuid.uuid4() for name in sorted({group for _, _, group, _ in PEOPLE})}
    conn.execute(
        insert(UserGroup),
        [{"id": gid, "name": name, "owner_id": demo.owner_id} for name, gid in groups.items()],
    )
    users = []
    for index, (name, email, group, role) in enumerate(PEOPLE):
        user_id = uuid.uuid4()
        users.append(
            {
                "id": user_id,
                "name": name,
                "email": email,
                "phone": f"+1 555 01{index + 10}",
                "password": demo.password_hash,
            }
        )
        demo.made.setdefault("users", []).append(user_id)
        demo.made.setdefault("links", []).append(
            {"owner_id": user_id, "user_groups": groups[group], "user_roles": roles[role]}
        )
    conn.execute(insert(User), users)
    conn.execute(insert(UserMeta), demo.made["links"])
    demo.made["groups"] = groups
