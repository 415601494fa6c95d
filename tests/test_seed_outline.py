"""The tenant schema is the seed's outline (API.md §6), column by column, and migration 0006
fills the NULLs that earlier revisions allowed before making those columns NOT NULL."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine, delete, insert

from atrium.platform.db.alembic_runner import (
    current_revision,
    run_downgrade,
    run_upgrade,
)
from atrium.platform.db.binding import set_transaction_search_path
from atrium.platform.tenancy.naming import quote_ident
from atrium.platform.tenancy.registry import Tenant
from tests.conftest import MadeTenant, unique_slug

NOT_NULL, NULL = False, True
AUDIT = {
    "id": ("uuid", NOT_NULL),
    "created_at": ("timestamp", NOT_NULL),
    "updated_at": ("timestamp", NOT_NULL),
}

# The fields of both kinds of discussion (API.md §8).
DISCUSSION = {
    "title": ("text", NULL),
    "body": ("text", NOT_NULL),
    "parent_id": ("uuid", NULL),
    "reply_count": ("integer", NOT_NULL),
    "last_reply_at": ("timestamp", NULL),
    "owner_id": ("uuid", NOT_NULL),
}

# API.md §6, written once: table -> column -> (type family, nullable). Columns that are
# not API fields are marked; everything else is the seed's.
SEED_OUTLINE: dict[str, dict[str, tuple[str, bool]]] = {
    "users": {
        **AUDIT,
        "name": ("text", NOT_NULL),
        "email": ("text", NOT_NULL),
        "phone": ("text", NOT_NULL),
        "password": ("text", NOT_NULL),
        "revoked_token_ids": ("json", NOT_NULL),  # internal: logged-out tokens (migration 0004)
        "tokens_valid_after": ("timestamp", NULL),  # internal: password change (migration 0017)
        "email_words": ("text", NOT_NULL),  # internal, generated: the email's parts for `q` (0019)
    },
    "user_meta": {
        **AUDIT,
        "owner_id": ("uuid", NOT_NULL),
        "user_groups": ("uuid", NOT_NULL),
        "user_roles": ("uuid", NOT_NULL),
        "uniq_customize": ("json", NULL),
    },
    "user_groups": {**AUDIT, "name": ("text", NOT_NULL), "owner_id": ("uuid", NOT_NULL)},
    "user_roles": {
        **AUDIT,
        "name": ("text", NOT_NULL),
        "owner_id": ("uuid", NOT_NULL),
        "permissions": ("array", NOT_NULL),
    },
    "customize": {**AUDIT, "data": ("json", NOT_NULL), "tenant_id": ("uuid", NOT_NULL)},
    "media": {
        **AUDIT,
        "owner_id": ("uuid", NOT_NULL),
        "name": ("text", NOT_NULL),
        "type": ("text", NOT_NULL),
        "size": ("integer", NOT_NULL),
        "data": ("bytes", NOT_NULL),  # the file's bytes, served by /media/{id}/content
    },
    # API.md §8 (migration 0010)
    "projects": {
        **AUDIT,
        "name": ("text", NOT_NULL),
        "description": ("text", NULL),
        "status": ("text", NOT_NULL),
        "member_ids": ("array", NOT_NULL),
        "owner_id": ("uuid", NOT_NULL),
    },
    "project_discussions": {**AUDIT, **DISCUSSION, "project_id": ("uuid", NOT_NULL)},
    "forums": {
        **AUDIT,
        "name": ("text", NOT_NULL),
        "description": ("text", NULL),
        "owner_id": ("uuid", NOT_NULL),
    },
    "forum_discussions": {
        **AUDIT,
        **DISCUSSION,
        "forum_id": ("uuid", NOT_NULL),
        "pinned": ("boolean", NOT_NULL),
        "locked": ("boolean", NOT_NULL),
    },
    # API.md §10: help-desk tickets and their replies.
    "tickets": {
        **AUDIT,
        "owner_id": ("uuid", NOT_NULL),
        "requester_id": ("uuid", NOT_NULL),  # generated: owner_id under its §10 name
        "subject": ("text", NOT_NULL),
        "body": ("text", NOT_NULL),
        "status": ("text", NOT_NULL),
        "priority": ("text", NOT_NULL),
        "priority_rank": ("integer", NOT_NULL),  # internal, generated: sorts priority by urgency
        "assignee_id": ("uuid", NULL),
        "tags": ("array", NOT_NULL),
        "follow_up_of": ("uuid", NULL),
        "solved_at": ("timestamp", NULL),
        "closed_at": ("timestamp", NULL),
    },
    "ticket_replies": {
        **AUDIT,
        "ticket_id": ("uuid", NOT_NULL),
        "owner_id": ("uuid", NOT_NULL),
        "body": ("text", NOT_NULL),
        "visibility": ("text", NOT_NULL),
    },
    # API.md §10: invoices, and the counter their numbers come from (internal).
    "invoices": {
        **AUDIT,
        "owner_id": ("uuid", NOT_NULL),
        "number": ("text", NULL),
        "status": ("text", NOT_NULL),
        "customer_name": ("text", NOT_NULL),
        "customer_email": ("text", NULL),
        "currency": ("text", NOT_NULL),
        "issue_date": ("date", NULL),
        "due_date": ("date", NULL),
        "notes": ("text", NULL),
        "items": ("json", NOT_NULL),
        "subtotal": ("integer", NOT_NULL),
        "tax": ("integer", NOT_NULL),
        "total": ("integer", NOT_NULL),
        "amount_paid": ("integer", NOT_NULL),
        "amount_due": ("integer", NOT_NULL),
        "item_descriptions": ("text", NOT_NULL),  # internal: the lines `q` searches (migration 0018)
        "customer_email_words": ("text", NULL),  # internal, generated: the email's parts for `q` (0019)
    },
    "invoice_counters": {"name": ("text", NOT_NULL), "last": ("integer", NOT_NULL)},
    # API.md §11 (migration 0013_forms)
    "forms": {
        **AUDIT,
        "owner_id": ("uuid", NOT_NULL),
        "title": ("text", NOT_NULL),
        "description": ("text", NULL),
        "status": ("text", NOT_NULL),
        "public": ("boolean", NOT_NULL),
        "fields": ("json", NOT_NULL),
        "version": ("integer", NOT_NULL),
        "response_count": ("integer", NOT_NULL),
    },
    "form_responses": {
        **AUDIT,
        "form_id": ("uuid", NOT_NULL),
        "answers": ("json", NOT_NULL),
        "form_version": ("integer", NOT_NULL),
        "owner_id": ("uuid", NULL),  # null: an anonymous response to a public form
    },
    # API.md §7 (migrations 0014 and 0015)
    "documents": {
        **AUDIT,
        "title": ("text", NOT_NULL),
        "body": ("text", NOT_NULL),
        "project_id": ("uuid", NULL),
        "media_ids": ("array", NOT_NULL),
        "version": ("integer", NOT_NULL),
        "owner_id": ("uuid", NOT_NULL),
    },
    # internal: every version of each document, served by /documents/{id}/versions
    "document_versions": {
        "id": ("uuid", NOT_NULL),
        "document_id": ("uuid", NOT_NULL),
        "version": ("integer", NOT_NULL),
        "title": ("text", NOT_NULL),
        "body": ("text", NOT_NULL),
        "editor_id": ("uuid", NULL),
        "created_at": ("timestamp", NOT_NULL),
    },
    "document_comments": {
        **AUDIT,
        "document_id": ("uuid", NOT_NULL),
        "body": ("text", NOT_NULL),
        "document_version": ("integer", NOT_NULL),
        "owner_id": ("uuid", NOT_NULL),
    },
    "events": {
        **AUDIT,
        "title": ("text", NOT_NULL),
        "description": ("text", NULL),
        "starts_at": ("timestamp", NOT_NULL),
        "ends_at": ("timestamp", NOT_NULL),
        "all_day": ("boolean", NOT_NULL),
        "time_zone": ("text", NOT_NULL),
        "location": ("text", NULL),
        "attendee_ids": ("array", NOT_NULL),
        "recurrence": ("text", NULL),
        "series_ends_at": ("timestamp", NOT_NULL),  # internal: when the last occurrence ends
        "owner_id": ("uuid", NOT_NULL),
    },
    # internal: each user's calendar-feed token, as its SHA-256
    "event_feed_tokens": {
        "user_id": ("uuid", NOT_NULL),
        "token_hash": ("text", NOT_NULL),
        "created_at": ("timestamp", NOT_NULL),
    },
    # API.md §9: chat rooms, their messages, and each member's read marker (internal).
    "chats": {
        **AUDIT,
        "name": ("text", NULL),
        "kind": ("text", NOT_NULL),
        "member_ids": ("array", NOT_NULL),
        "direct_pair": ("text", NULL),  # internal: the pair's ids, one direct room per pair
        "last_seq": ("integer", NOT_NULL),  # the per-room message counter
        "last_message_at": ("timestamp", NULL),
        "owner_id": ("uuid", NOT_NULL),
    },
    "chat_messages": {
        **AUDIT,
        "chat_id": ("uuid", NOT_NULL),
        "seq": ("integer", NOT_NULL),
        "body": ("text", NOT_NULL),
        "parent_id": ("uuid", NULL),
        "owner_id": ("uuid", NOT_NULL),
        "edited_at": ("timestamp", NULL),
        "deleted": ("boolean", NOT_NULL),
    },
    "chat_reads": {
        "chat_id": ("uuid", NOT_NULL),
        "user_id": ("uuid", NOT_NULL),
        "seq": ("integer", NOT_NULL),
    },
    # internal: the answers to POSTs sent with an Idempotency-Key (migration 0007)
    "idempotency_keys": {
        "user_id": ("uuid", NOT_NULL),
        "key": ("text", NOT_NULL),
        "fingerprint": ("bytes", NOT_NULL),
        "status": ("integer", NOT_NULL),
        "body": ("bytes", NOT_NULL),
        "headers": ("json", NOT_NULL),
        "created_at": ("timestamp", NOT_NULL),
    },
}

FAMILIES = {
    "uuid": "uuid",
    "character varying": "text",
    "text": "text",
    "timestamp with time zone": "timestamp",
    "jsonb": "json",
    "json": "json",
    "ARRAY": "array",
    "bigint": "integer",
    "smallint": "integer",
    "integer": "integer",
    "bytea": "bytes",
    "boolean": "boolean",
}


def test_provisioned_schema_is_the_seed_outline(
    operator_engine: Engine, make_tenant: Callable[..., MadeTenant]
) -> None:
    schema = make_tenant().tenant.schema
    with operator_engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %(s)s AND table_name <> 'alembic_version'",
            {"s": schema},
        ).all()
    actual: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, data_type, nullable in rows:
        actual.setdefault(table, {})[column] = (FAMILIES.get(data_type, data_type), nullable == "YES")
    assert actual == SEED_OUTLINE


def _one(conn: Connection, sql: str, **params: object) -> object:
    return conn.exec_driver_sql(sql, params).scalar_one()


def _seed_at_0005(conn: Connection, schema: str) -> dict[str, uuid.UUID]:
    """A schema at 0005 with NULL owners, groups and roles, and two candidate owners:
    ``registered`` (the registry's owner) and ``first_owner`` (linked to ``Owner`` first)."""
    conn.exec_driver_sql(f"CREATE SCHEMA {quote_ident(schema)}")
    run_upgrade(conn, "tenant", schema, "0005")
    set_transaction_search_path(conn, schema)
    ids = {k: uuid.uuid4() for k in ("first_owner", "registered", "owner_role", "member", "everyone")}
    for key, at in (("first_owner", "2026-01-01"), ("registered", "2026-01-02")):
        conn.exec_driver_sql(
            "INSERT INTO users (id, name, email, phone, password, created_at)"
            " VALUES (%(id)s, %(k)s, %(e)s, '1', 'x', %(at)s)",
            {"id": ids[key], "k": key, "e": f"{key}@example.com", "at": at},
        )
    conn.exec_driver_sql(
        "INSERT INTO user_roles (id, name, owner_id, permissions) VALUES"
        " (%(o)s, 'Owner', NULL, '{*}'), (%(m)s, 'Member', NULL, '{users:read}')",
        {"o": ids["owner_role"], "m": ids["member"]},
    )
    conn.exec_driver_sql(
        "INSERT INTO user_groups (id, name, owner_id) VALUES (%(g)s, 'Everyone', NULL)",
        {"g": ids["everyone"]},
    )
    for user, at in (("first_owner", "2026-01-01"), ("registered", "2026-01-02")):
        conn.exec_driver_sql(
            "INSERT INTO user_meta (owner_id, user_groups, user_roles, created_at)"
            " VALUES (%(u)s, %(g)s, %(r)s, %(at)s)",
            {"u": ids[user], "g": ids["everyone"], "r": ids["owner_role"], "at": at},
        )
    conn.exec_driver_sql(
        "INSERT INTO user_meta (owner_id, user_groups, user_roles) VALUES"
        " (%(u)s, NULL, %(r)s), (%(u)s, %(g)s, NULL), (%(u)s, NULL, NULL)",
        {"u": ids["registered"], "g": ids["everyone"], "r": ids["owner_role"]},
    )
    conn.exec_driver_sql(
        "INSERT INTO media (owner_id, name, type, size, data) VALUES (NULL, 'a.txt', 'text/plain', 1, 'a')"
    )
    return ids


def _constraint(conn: Connection, schema: str, name: str) -> str:
    return str(
        _one(
            conn,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = %(n)s AND connamespace = %(s)s::regnamespace",
            n=name,
            s=schema,
        )
    )


@pytest.mark.parametrize("registered", [True, False], ids=["registry-owner", "owner-role-fallback"])
def test_0006_fills_nulls_then_downgrades(operator_engine: Engine, registered: bool) -> None:
    schema = "tenant_nn_" + unique_slug("n").replace("-", "_")
    tenant_id = uuid.uuid4()
    with operator_engine.begin() as conn:
        ids = _seed_at_0005(conn, schema)
        if registered:
            conn.execute(
                insert(Tenant).values(
                    id=tenant_id,
                    slug=unique_slug("nn"),
                    name="NN",
                    schema_name=schema,
                    owner_id=ids["registered"],
                    version="0005",
                )
            )
    expected_owner = ids["registered" if registered else "first_owner"]
    try:
        with operator_engine.begin() as conn:
            run_upgrade(conn, "tenant", schema, "0006")
            set_transaction_search_path(conn, schema)
            assert current_revision(conn, schema) == "0006"
            for table in ("user_groups", "user_roles", "media"):
                owners = conn.exec_driver_sql(f"SELECT DISTINCT owner_id FROM {table}").scalars().all()
                assert owners == [expected_owner], table
                assert _constraint(conn, schema, f"fk_{table}_owner_id_users").endswith("ON DELETE RESTRICT")
            links = conn.exec_driver_sql("SELECT user_groups, user_roles FROM user_meta").all()
            assert {g for g, _ in links} == {ids["everyone"]}
            assert {r for _, r in links} == {ids["owner_role"], ids["member"]}
            assert _one(conn, "SELECT count(*) FROM user_meta WHERE user_roles = %(m)s", m=ids["member"]) == 2
            nullable = conn.exec_driver_sql(
                "SELECT table_name || '.' || column_name FROM information_schema.columns"
                " WHERE table_schema = %(s)s AND is_nullable = 'YES' AND column_name IN"
                " ('owner_id', 'user_groups', 'user_roles')",
                {"s": schema},
            ).scalars()
            assert list(nullable) == []
        with operator_engine.begin() as conn:
            run_downgrade(conn, "tenant", schema, "0005")
            set_transaction_search_path(conn, schema)
            assert current_revision(conn, schema) == "0005"
            for table in ("user_groups", "user_roles", "media"):
                assert _constraint(conn, schema, f"fk_{table}_owner_id_users").endswith("ON DELETE SET NULL")
            conn.exec_driver_sql("UPDATE user_meta SET user_groups = NULL, user_roles = NULL")
            conn.exec_driver_sql("DELETE FROM users WHERE id = %(u)s", {"u": expected_owner})
            assert _one(conn, "SELECT count(*) FROM media WHERE owner_id IS NULL") == 1
    finally:
        with operator_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
            conn.execute(delete(Tenant).where(Tenant.id == tenant_id))


def test_0006_recreates_a_deleted_builtin_role_when_a_link_needs_it(operator_engine: Engine) -> None:
    schema = "tenant_nn_" + unique_slug("n").replace("-", "_")
    try:
        with operator_engine.begin() as conn:
            ids = _seed_at_0005(conn, schema)
            conn.exec_driver_sql("DELETE FROM user_roles WHERE id = %(m)s", {"m": ids["member"]})
            run_upgrade(conn, "tenant", schema, "0006")
            set_transaction_search_path(conn, schema)
            role = conn.exec_driver_sql(
                "SELECT r.name, r.owner_id, r.permissions FROM user_meta m JOIN user_roles r"
                " ON r.id = m.user_roles WHERE r.id <> %(o)s",
                {"o": ids["owner_role"]},
            ).all()
            assert len(role) == 2 and {tuple(r[:2]) for r in role} == {("Member", ids["first_owner"])}
            assert "users:read" in role[0][2] and "*" not in role[0][2]
    finally:
        with operator_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
