"""Permission strings and the built-in roles every tenant is provisioned with.

A permission is ``<resource>:read``, ``<resource>:write`` or ``*``. The resources are
those the areas declare (platform/areas.py); the built-in roles follow from the same
declarations, so a new resource is granted to new tenants' roles without a list kept by
hand. A migration that adds a resource also adds its permissions to the built-in
``Admin`` and ``Member`` roles of existing tenants.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

WILDCARD = "*"
ACTIONS = ("read", "write")

# What the built-in Member role may do with a resource (API.md §4); Admin may do everything.
MemberAccess = Literal["read", "write"] | None


def read(resource: str) -> str:
    return f"{resource}:read"


def write(resource: str) -> str:
    return f"{resource}:write"


def manage(resource: str) -> str:
    return f"{resource}:manage"


OWNER_ROLE = "Owner"
ADMIN_ROLE = "Admin"
MEMBER_ROLE = "Member"
EVERYONE_GROUP = "Everyone"


@cache
def resources() -> dict[str, MemberAccess]:
    """Every resource of the API, with what Member may do with it."""
    # Imported here: the areas' modules import this one.
    from atrium.tenants.areas import resource_specs

    return {spec.resource: spec.member for spec in resource_specs()}


def _member_permissions(resource: str, access: MemberAccess) -> list[str]:
    if access is None:
        return []
    return [read(resource)] if access == "read" else [read(resource), write(resource)]


@cache
def builtin_roles() -> dict[str, list[str]]:
    """The roles every tenant is provisioned with, and their permissions."""
    every = resources()
    return {
        OWNER_ROLE: [WILDCARD],
        ADMIN_ROLE: [p for r in every for p in (read(r), write(r))],
        MEMBER_ROLE: [p for r, access in every.items() for p in _member_permissions(r, access)],
    }


def is_valid_permission(value: str) -> bool:
    if value == WILDCARD:
        return True
    resource, sep, action = value.partition(":")
    return bool(sep) and resource in resources() and action in ACTIONS


def grants(permissions: frozenset[str], needed: str) -> bool:
    return WILDCARD in permissions or needed in permissions
