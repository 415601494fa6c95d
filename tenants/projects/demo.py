"""A sample project with a discussion and replies for a demo tenant (platform/tenancy/demo.py)."""

from __future__ import annotations

import datetime
import uuid

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.base import utcnow
from atrium.tenants.projects.models import Project, ProjectDiscussion

REPLIES = [
    "Sounds good. I'll draft the announcement by Thursday.",
    "Support is ready: the help-desk macros are updated.",
]


def seed(conn: Connection, demo: DemoTenant) -> None:
    people = demo.made.get("users", [])
    project_id, topic_id = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        insert(Project).values(
            id=project_id,
            name="Website relaunch",
            description="Everything about the new site: plans, copy and launch.",
            member_ids=[demo.owner_id, *people],
            owner_id=demo.owner_id,
        )
    )
    started = utcnow() - datetime.timedelta(hours=3)
    replies = [
        {
            "project_id": project_id,
            "parent_id": topic_id,
            "body": body,
            "owner_id": people[index % len(people)] if people else demo.owner_id,
            "created_at": started + datetime.timedelta(hours=index + 1),
        }
        for index, body in enumerate(REPLIES)
    ]
    conn.execute(
        insert(ProjectDiscussion).values(
            id=topic_id,
            project_id=project_id,
            title="Launch plan",
            body="We launch on the first Monday of next month. Reply with what your team needs.",
            owner_id=demo.owner_id,
            created_at=started,
            reply_count=len(replies),
            last_reply_at=replies[-1]["created_at"],
        )
    )
    conn.execute(insert(ProjectDiscussion), replies)
    demo.made["projects"] = [project_id]
