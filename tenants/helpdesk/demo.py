"""Sample tickets for a demo tenant (platform/tenancy/demo.py): one in each of several
states, one with an internal note the requester never sees."""

from __future__ import annotations

import datetime
import uuid

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.helpdesk.models import Ticket, TicketReply


def seed(conn: Connection, demo: DemoTenant) -> None:
    people = demo.made.get("users") or [demo.owner_id]
    # The owner holds every permission, so is the agent; the sample people ask.
    agent, asking = demo.owner_id, people
    now = datetime.datetime.now(datetime.UTC)
    samples = [
        ("Cannot log in from the mobile app", "new", "high", None, ["login", "mobile"]),
        ("Invoice PDF shows the wrong address", "open", "normal", agent, ["billing"]),
        ("Please add dark mode", "on_hold", "low", agent, ["feature-request"]),
        ("Export of last month's report failed", "pending", "urgent", agent, ["reports"]),
        ("Password reset email never arrived", "solved", "normal", agent, ["login", "email"]),
        ("Welcome call scheduling", "closed", "low", agent, []),
    ]
    tickets = []
    for index, (subject, status, priority, assignee, tags) in enumerate(samples):
        tickets.append(
            {
                "id": uuid.uuid4(),
                "owner_id": asking[index % len(asking)],
                "subject": subject,
                "body": f"{subject}. Details from the requester.",
                "status": status,
                "priority": priority,
                "assignee_id": assignee,
                "tags": tags,
                "solved_at": now if status in {"solved", "closed"} else None,
                "closed_at": now if status == "closed" else None,
            }
        )
    conn.execute(insert(Ticket), tickets)
    billing = tickets[1]
    conn.execute(
        insert(TicketReply),
        [
            {
                "ticket_id": billing["id"],
                "owner_id": agent,
                "body": "Thanks for the report: we are looking into it.",
                "visibility": "public",
            },
            {
                "ticket_id": billing["id"],
                "owner_id": agent,
                "body": "Internal: the address comes from the customer's old profile.",
                "visibility": "internal",
            },
        ],
    )
    demo.made["tickets"] = [t["id"] for t in tickets]
