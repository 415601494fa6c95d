"""A demo tenant's chat room with a short conversation (platform/tenancy/demo.py)."""

from __future__ import annotations

import datetime
import uuid

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.base import utcnow
from atrium.tenants.chats.models import Chat, ChatMarker, ChatMessage

CONVERSATION = [
    "Morning all! Is the staging deploy done?",
    "Yes, it went out ten minutes ago.",
    "Great, I'll run the smoke tests now.",
    "All green. Shipping to production after lunch.",
]


def seed(conn: Connection, demo: DemoTenant) -> None:
    people = [demo.owner_id, *demo.made.get("users", [])]
    room_id = uuid.uuid4()
    started = utcnow() - datetime.timedelta(minutes=30)
    conn.execute(
        insert(Chat).values(
            id=room_id,
            name="general",
            kind="group",
            member_ids=people,
            last_seq=len(CONVERSATION),
            last_message_at=started + datetime.timedelta(minutes=len(CONVERSATION)),
            owner_id=demo.owner_id,
        )
    )
    conn.execute(
        insert(ChatMessage),
        [
            {
                "chat_id": room_id,
                "seq": seq,
                "body": body,
                "owner_id": people[(seq - 1) % len(people)],
                "created_at": started + datetime.timedelta(minutes=seq),
                "updated_at": started + datetime.timedelta(minutes=seq),
            }
            for seq, body in enumerate(CONVERSATION, start=1)
        ],
    )
    # The owner has read the first two: the room shows them two unread.
    conn.execute(insert(ChatMarker).values(chat_id=room_id, user_id=demo.owner_id, seq=2))
    demo.made["chats"] = [room_id]
