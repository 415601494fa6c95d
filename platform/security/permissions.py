"""Permission strings and the built-in roles every tenant is provisioned with.

A permission is ``<resource>:read``, ``<resource>:write``, ``<resource>:manage`` or ``*``
(API.md §4); ``manage`` includes ``write``, which includes ``read``. The resources are
those the areas declare (platform/areas.py); the built-in roles follow from the same
declarations (``role_grants``), so a new resource is granted to new tenants' roles
without a list kept by hand, and a migration grants it to existing tenants' roles with
the same function (platform/security/role_grants.py).
"""

from __future__ import annotations

from functools import cache
from typing import Literal

WILDCARD = "*"
# Weakest first: each action includes those before it.
ACTIONS = ("read", "write", "manage")

# What the built-in Member role may do with a resource (API.md §4); Admin manages everything.
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
# The built-in roles whose permissions are listed per resource (Owner holds ``*``).
PER_RESOURCE_ROLES = (ADMIN_ROLE, MEMBER_ROLE)


@cache
def resources() -> dict[str, MemberAccess]:
    """Every resource of the API, with what Member may do with it."""
    # Imported here: the areas' modules import this one.
    from atrium.tenants.areas import resource_specs

    return {spec.resource: spec.member for spec in resource_specs()}


def role_grants(resource: str, member: MemberAccess) -> dict[str, list[str]]:
    """What each per-resource built-in role holds on ``resource``: one permission each at
    most, the strongest, since it includes the weaker ones.

    The one definition of the built-in roles: new tenants get it through
    ``builtin_roles``, existing ones through the migrations' ``grant_builtin_role_permissions``.
    """
    return {
        ADMIN_ROLE: [manage(resource)],
        MEMBER_ROLE: [] if member is None else [f"{resource}:{member}"],
    }


@cache
def builtin_roles() -> dict[str, list[str]]:
    """The roles every tenant is provisioned with, and their permissions."""
    roles: dict[str, list[str]] = {OWNER_ROLE: [WILDCARD], ADMIN_ROLE: [], MEMBER_ROLE: []}
    for resource, access in resources().items():
        for role, granted in role_grants(resource, access).items():
            roles[role].extend(granted)
    return {role: sorted(granted) for role, granted in roles.items()}


def is_valid_permission(value: str) -> bool:
    if value == WILDCARD:
        return True
    resource, sep, action = value.partition(":")
    return bool(sep) and resource in resources() and action in ACTIONS


def grants(permissions: frozenset[str], needed: str) -> bool:
    """Whether ``permissions`` include ``needed``, directly, through a stronger action on
    the same resource, or through ``*``."""
    if WILDCARD in permissions or needed in permissions:
        return True
    resource, _, action = needed.rpartition(":")
    if action not in ACTIONS:
        return False
    return any(f"{resource}:{stronger}" in permissions for stronger in ACTIONS[ACTIONS.index(action) + 1 :])


def effective(permissions: frozenset[str]) -> list[str]:
    """``permissions`` with every action they include spelled out (``*`` stays as it is)."""
    spelled = set(permissions)
    for permission in permissions:
        resource, _, action = permission.rpartition(":")
        if action in ACTIONS:
            spelled.update(f"{resource}:{weaker}" for weaker in ACTIONS[: ACTIONS.index(action)])
    return sorted(spelled)
