"""Permission strings and the built-in roles every tenant is provisioned with.

A permission is ``<resource>:read``, ``<resource>:write`` or ``*``. ``RESOURCES`` names
every resource of the API; a migration that adds a resource also adds its
permissions to the built-in ``Admin`` and ``Member`` roles of existing tenants.
"""

from __future__ import annotations

WILDCARD = "*"
RESOURCES: tuple[str, ...] = ("users", "user-meta", "user-groups", "user-roles", "customize", "media")


def read(resource: str) -> str:
    return f"{resource}:read"


def write(resource: str) -> str:
    return f"{resource}:write"


OWNER_ROLE = "Owner"
ADMIN_ROLE = "Admin"
MEMBER_ROLE = "Member"
EVERYONE_GROUP = "Everyone"

BUILTIN_ROLES: dict[str, list[str]] = {
    OWNER_ROLE: [WILDCARD],
    ADMIN_ROLE: [p for r in RESOURCES for p in (read(r), write(r))],
    MEMBER_ROLE: [read(r) for r in RESOURCES],
}


def is_valid_permission(value: str) -> bool:
    if value == WILDCARD:
        return True
    resource, sep, action = value.partition(":")
    return bool(sep) and resource in RESOURCES and action in {"read", "write"}


def grants(permissions: frozenset[str], needed: str) -> bool:
    return WILDCARD in permissions or needed in permissions
