"""Granting a resource to existing tenants' built-in roles, from a tenant migration.

A new tenant's ``Admin`` and ``Member`` roles come from ``permissions.role_grants``;
a migration that adds (or first grants) a resource calls
``grant_builtin_role_permissions(op, "events", member="write")`` so that every existing
tenant's roles hold exactly what a new tenant's do, through the same function.
``tests/test_role_migrations.py`` compares a migrated tenant's roles with a provisioned
one's, so a forgotten call fails the suite.

The built-in roles of an existing tenant are found by name, the oldest of each name
(as migration 0006 finds them): a tenant may have made a role of the same name since.
A built-in role the tenant deleted stays deleted. Every statement is one message and
names no schema: the runner has bound the transaction to the tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from atrium.platform.security.permissions import MemberAccess, role_grants

# The role's permissions on every other resource stay; those on ``resource`` become
# ``granted``. Rows already right are left alone, so ``updated_at`` moves only on a change.
_SET_RESOURCE_PERMISSIONS = sa.text(
    """
    UPDATE user_roles AS r SET permissions = n.permissions, updated_at = now()
    FROM (
        SELECT id, ARRAY(
            SELECT p FROM unnest(permissions) AS p WHERE split_part(p, ':', 1) <> :resource
            UNION SELECT unnest(CAST(:granted AS text[]))
            ORDER BY 1
        ) AS permissions
        FROM user_roles
        WHERE id = (SELECT id FROM user_roles WHERE name = :role ORDER BY created_at, id LIMIT 1)
    ) AS n
    WHERE r.id = n.id AND r.permissions IS DISTINCT FROM n.permissions
    """
).bindparams(sa.bindparam("granted", type_=ARRAY(sa.Text())))


def set_builtin_role_permissions(op: Any, role: str, resource: str, granted: Sequence[str]) -> None:
    """Make the built-in ``role``'s permissions on ``resource`` exactly ``granted``
    (for downgrades that restore what an earlier revision granted)."""
    op.execute(_SET_RESOURCE_PERMISSIONS.bindparams(role=role, resource=resource, granted=list(granted)))


def grant_builtin_role_permissions(op: Any, resource: str, member: MemberAccess) -> None:
    """Give existing tenants' built-in roles exactly what new tenants' hold on ``resource``.

    ``member`` is what the resource's ``ResourceSpec.member`` was when the migration was
    written, spelled out in the migration: a later change to the declaration needs a
    migration of its own.
    """
    for role, granted in role_grants(resource, member).items():
        set_builtin_role_permissions(op, role, resource, granted)


def revoke_builtin_role_permissions(op: Any, resource: str) -> None:
    """Take every permission on ``resource`` from the built-in roles (the downgrade of a
    migration that granted a new resource)."""
    for role in role_grants(resource, None):
        set_builtin_role_permissions(op, role, resource, [])
