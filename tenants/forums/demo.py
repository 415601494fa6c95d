"""A sample forum with a pinned topic and replies for a demo tenant (platform/tenancy/demo.py)."""

from __future__ import annotations

import datetime
import uuid

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.base import utcnow
from atrium.tenants.forums.models import Forum, ForumDiscussion

REPLIES = ["Thanks, that answers my question.", "Bookmarked. Could we add a section on time off?"]


def seed(conn: Connection, demo: DemoTenant) -> None:
    # Areas seed in name order: the forums come before identity's sample people, so
    # every post here is the owner's.
    forum_id, pinned_id = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        insert(Forum).values(
            id=forum_id,
            name="General",
            description="Questions and news for everyone in the organisation.",
            owner_id=demo.owner_id,
        )
    )
    started = utcnow() - datetime.timedelta(days=1)
    replies = [
        {
            "forum_id": forum_id,
            "parent_id": pinned_id,
            "body": body,
            "owner_id": demo.owner_id,
            "created_at": started + datetime.timedelta(hours=index + 1),
        }
        for index, body in enumerate(REPLIES)
    ]
    conn.execute(
        insert(ForumDiscussion),
        [
            {
                "id": pinned_id,
                "forum_id": forum_id,
                "title": "Read me first: how this forum works",
                "body": "Search before asking, one question per topic, and be kind.",
                "pinned": True,
                "owner_id": demo.owner_id,
                "created_at": started,
                "reply_count": len(replies),
                "last_reply_at": replies[-1]["created_at"],
            },
            {
                "id": uuid.uuid4(),
                "forum_id": forum_id,
                "title": "Where do I find the holiday calendar?",
                "body": "Is there a shared calendar of public holidays for each office?",
                "pinned": False,
                "owner_id": demo.owner_id,
                "created_at": started + datetime.timedelta(hours=2),
                "reply_count": 0,
                "last_reply_at": None,
            },
        ],
    )
    conn.execute(insert(ForumDiscussion), replies)
