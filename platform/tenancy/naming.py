"""Slugs, schema names and host names: the only places where names enter SQL.

A schema name is derived from a validated slug and stored in the registry; request
input never becomes a schema name. Wherever SQL is built, names go through
``quote_ident`` (psycopg's identifier quoting).
"""

from __future__ import annotations

import ipaddress
import re

from psycopg import sql

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
RESERVED_SLUGS = frozenset(
    "www api app admin public platform static assets mail smtp ftp ns status health schema docs".split()
)
SCHEMA_PREFIX = "tenant_"
SCHEMA_PATTERN = re.compile(r"^tenant_[a-z][a-z0-9_]{1,30}[a-z0-9]$")
PLATFORM_SCHEMA = "platform"

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")


class InvalidName(ValueError):
    """A slug, schema or host name that the platform refuses; the message says why."""


def validate_slug(slug: str) -> str:
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        raise InvalidName(
            f"invalid slug {slug!r}: use 3-32 lower-case letters, digits and single hyphens, "
            "starting with a letter and not ending with a hyphen"
        )
    if "--" in slug:
        raise InvalidName(f"invalid slug {slug!r}: '--' is not allowed")
    if slug in RESERVED_SLUGS or slug.startswith("pg"):
        raise InvalidName(f"slug {slug!r} is reserved")
    return slug


def schema_for_slug(slug: str) -> str:
    """The schema name of a tenant: injective, since slugs never contain '_'."""
    return validate_schema(SCHEMA_PREFIX + validate_slug(slug).replace("-", "_"))


def validate_schema(schema: str) -> str:
    if not SCHEMA_PATTERN.fullmatch(schema):
        raise InvalidName(f"invalid tenant schema name {schema!r}")
    return schema


def quote_ident(name: str) -> str:
    return sql.Identifier(name).as_string(None)


def normalize_host(raw: str | None) -> tuple[str, str | None] | None:
    """Split a Host header into (host, port); None when it is not a valid host name.

    Case-insensitive; a trailing dot and the port are dropped. IP literals are not
    host names of any tenant, so they are refused like any other invalid host: a name
    whose last label is all digits is one (no top-level domain is numeric, RFC 3696),
    and a bracketed IPv6 literal never matches a label.
    """
    if not raw or len(raw) > 260:
        return None
    host, sep, port = raw.strip().lower().rpartition(":")
    if not sep:
        host, port = port, ""
    elif not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
        return None
    host = host[:-1] if host.endswith(".") else host
    if not host or len(host) > 253:
        return None
    labels = host.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        return None
    return host, (port or None)


def is_ip_literal(raw: str | None) -> bool:
    """Whether a Host header names an IP address (``10.0.0.1``, ``[::1]:8000``), port or not."""
    if not raw:
        return False
    host = raw.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def validate_domain(raw: str) -> str:
    """A custom domain as an operator registers it: a valid host name with a dot."""
    parsed = normalize_host(raw)
    if parsed is None or parsed[1] is not None or "." not in parsed[0]:
        raise InvalidName(f"invalid domain {raw!r}")
    host = parsed[0]
    if host.split(".")[-1].isdigit():
        raise InvalidName(f"invalid domain {raw!r}: IP addresses are not domains")
    return host
