"""the manage permission; built-in roles as API.md §4 lists them

API.md §4 splits ``write`` into ``write`` (create; change and delete one's own rows) and
``manage`` (any row). Before this revision ``write`` changed any row, so every role
holding ``<resource>:write`` on the six resources of this revision also gets
``<resource>:manage``: custom roles keep their powers. The built-in ``Admin`` and
``Member`` roles become exactly what a new tenant's are (Admin manages every resource;
Member reads every resource and writes media), through the helper every later area's
migration uses.

Downgrade: ``manage`` is taken from every role (a role holding it without ``write``
gets ``write``, what ``manage`` meant before), and the built-in roles get back the
permissions of revision 0006: Admin read and write, Member read, on the six resources.
A role made after the upgrade with ``manage`` alone loses ``read`` (the earlier code
knows no implied permissions).

Independent of 0007 (another branch): it touches only ``user_roles``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 21:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from atrium.platform.security.permissions import MemberAccess
from atrium.platform.security.role_grants import grant_builtin_role_permissions, set_builtin_role_permissions

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The resources at this revision and what Member may do with each: a migration must not
# change when the application's lists do.
MEMBER_ACCESS: dict[str, MemberAccess] = {
    "users": "read",
    "user-groups": "read",
    "user-roles": "read",
    "user-meta": "read",
    "customize": "read",
    "media": "write",
}


def upgrade() -> None:
    for resource in MEMBER_ACCESS:
        op.execute(
            sa.text(
                "UPDATE user_roles"
                " SET permissions ="
                " ARRAY(SELECT DISTINCT unnest(permissions || CAST(:manage AS text)) ORDER BY 1),"
                " updated_at = now()"
                " WHERE :write = ANY(permissions) AND NOT :manage = ANY(permissions)"
            ).bindparams(write=f"{resource}:write", manage=f"{resource}:manage")
        )
    for resource, member in MEMBER_ACCESS.items():
        grant_builtin_role_permissions(op, resource, member=member)


def downgrade() -> None:
    for resource in MEMBER_ACCESS:
        op.execute(
            sa.text(
                "UPDATE user_roles"
                " SET permissions = ARRAY(SELECT DISTINCT"
                " unnest(array_replace(permissions, CAST(:manage AS text), CAST(:write AS text)))"
                " ORDER BY 1), updated_at = now()"
                " WHERE :manage = ANY(permissions)"
            ).bindparams(write=f"{resource}:write", manage=f"{resource}:manage")
        )
    for resource in MEMBER_ACCESS:
        set_builtin_role_permissions(op, "Admin", resource, [f"{resource}:read", f"{resource}:write"])
        set_builtin_role_permissions(op, "Member", resource, [f"{resource}:read"])
