"""Statements whose text names a tenant's schema, with PostgreSQL's own ``$n`` placeholders.

The hot reads name the tenant's schema in their text (read_transaction.py says why), so
every tenant has statement texts of its own. psycopg turns ``%(name)s`` placeholders into
``$n`` with a regular expression and keeps the result for the last 128 texts only: over
more tenants than that, every request paid the conversion again (~30 µs of the app's
~680 µs per request over 1,000 tenants, bench/RESULTS.md, tenth pass). A
``TenantStatement`` is converted once, where it is defined; a request only puts its
schema in, and psycopg's raw cursor sends the text as it is (``RawQuery``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from atrium.platform.naming import quote_ident

# psycopg's named placeholder, its escaped percent sign, and any other percent sign.
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%|%")
_SCHEMA = "{s}"


class RawQuery(NamedTuple):
    """A statement in PostgreSQL's ``$n`` style and its values, in order."""

    sql: str
    values: list[Any]
    # Whether psycopg may count and prepare it (see ``TenantStatement``).
    recurring: bool = True


class TenantStatement:
    """A statement written with psycopg's ``%(name)s`` placeholders and ``{s}`` where the
    quoted schema and a dot go (every other brace is literal).

    ``recurring=False`` is for a statement a tenant runs about once per caller and cache
    TTL (loading a caller). psycopg counts every statement it runs, ``prepare=False``
    included, in a table of up to ``prepared_max`` texts per connection until its fifth
    run: over 10,000 tenants each connection's table filled with 512 such texts of ~900
    bytes that were never prepared, ~5 MB per worker, and they pushed out the counts of
    the statements that recur (bench/RESULTS.md, tenth pass). Such a statement runs with
    psycopg's preparing off (``ReadTransaction``).
    """

    __slots__ = ("_parts", "names", "recurring")

    def __init__(self, template: str, recurring: bool = True) -> None:
        self.recurring = recurring
        names: list[str] = []

        def numbered(match: re.Match[str]) -> str:
            if match.group(0) == "%%":
                return "%"
            name = match.group(1)
            if name is None:
                raise ValueError(f"a lone % in a statement template: {template!r}")
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self._parts = _PLACEHOLDER.sub(numbered, template).split(_SCHEMA)
        self.names = tuple(names)

    def for_tenant(self, schema: str, params: Mapping[str, Any]) -> RawQuery:
        """This statement on ``schema`` (from the registry; quoted here) with ``params``."""
        sql = (quote_ident(schema) + ".").join(self._parts)
        return RawQuery(sql, [params[name] for name in self.names], self.recurring)
