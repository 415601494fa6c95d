"""An open public form with a few responses for a demo tenant (platform/tenancy/demo.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, insert

from atrium.platform.tenancy.demo import DemoTenant
from atrium.tenants.forms.fields import check_answers, check_fields
from atrium.tenants.forms.models import Form, FormResponse

FIELDS = check_fields(
    [
        {"key": "name", "label": "Your name", "type": "text", "required": True, "max": 100},
        {"key": "email", "label": "Email", "type": "email"},
        {"key": "score", "label": "How was the event?", "type": "rating", "required": True},
        {
            "key": "topics",
            "label": "Topics you liked",
            "type": "multiselect",
            "options": ["API", "Ops", "Security"],
        },
        {"key": "again", "label": "Would you come again?", "type": "checkbox"},
    ]
)
ANSWERS = [
    {"name": "Ada", "email": "ada@demo.example", "score": 5, "topics": ["API", "Security"], "again": True},
    {"name": "Ben", "score": 4, "topics": ["Ops"], "again": True},
    {"name": '=HYPERLINK("http://example.com")', "score": 2, "again": False},
]


def seed(conn: Connection, demo: DemoTenant) -> None:
    form_id = uuid.uuid4()
    conn.execute(
        insert(Form).values(
            id=form_id,
            owner_id=demo.owner_id,
            title="Event feedback",
            description="Tell us how it went. Anyone with the link may answer: /public/forms/{id}.",
            status="open",
            public=True,
            fields=FIELDS,
            version=1,
            response_count=len(ANSWERS),
        )
    )
    conn.execute(
        insert(FormResponse),
        [
            {
                "form_id": form_id,
                "answers": check_answers(FIELDS, answers),
                "form_version": 1,
                "owner_id": None,
            }
            for answers in ANSWERS
        ],
    )
    demo.made.setdefault("forms", []).append(form_id)
