"""The two Alembic environments, driven from code.

``migrations/platform`` migrates the shared schema; ``migrations/tenant`` migrates one
tenant schema at a time, with its version table inside that schema. Both ``env.py``
files call ``configure_and_run`` here, so the ``alembic`` command line and the
``atrium`` operator commands run exactly the same code.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Literal

from advanced_alchemy.types import GUID, DateTimeUTC
from alembic import context as alembic_context
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationStep
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, text

from atrium.platform.db.binding import create_shared_schema, qualified_table, set_transaction_search_path
from atrium.platform.tenancy.naming import PLATFORM_SCHEMA

Env = Literal["platform", "tenant"]
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(env: Env, version_locations: list[str] | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR / env))
    if version_locations:
        cfg.set_main_option("version_locations", " ".join(version_locations))
    cfg.set_main_option("path_separator", "space")
    return cfg


@cache
def script_directory(env: Env, version_locations: tuple[str, ...] = ()) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(env, list(version_locations) or None))


def head_revision(env: Env, version_locations: tuple[str, ...] = ()) -> str:
    head = script_directory(env, version_locations).get_current_head()
    if head is None:
        raise RuntimeError(f"the {env} migration environment has no revisions")
    return head


def target_metadata(env: Env) -> MetaData:
    if env == "platform":
        from atrium.platform.tenancy.registry import platform_metadata

        return platform_metadata
    from atrium.tenants.models import tenant_metadata

    return tenant_metadata


def _include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    # Tenant autogenerate compares the tenant schema only; nothing else is ours there.
    return not (type_ == "table" and name == VERSION_TABLE)


def _render_item(type_: str, obj: Any, _autogen_context: Any) -> str | bool:
    # Migrations use SQLAlchemy's own types, so they never depend on how a library
    # spells its column types today.
    if type_ == "type" and isinstance(obj, GUID):
        return "sa.Uuid()"
    if type_ == "type" and isinstance(obj, DateTimeUTC):
        return "sa.DateTime(timezone=True)"
    return False


def configure_and_run(connection: Connection, env: Env, schema: str) -> None:
    """Configure the current Alembic context on ``connection`` and run its migrations.

    Runs inside the caller's transaction when there is one (Alembic then leaves the
    transaction to the caller), so a tenant's migration and its registry update commit
    together.
    """
    if env == "tenant":
        set_transaction_search_path(connection, schema)
    else:
        create_shared_schema(connection, schema)
    alembic_context.configure(
        connection=connection,
        target_metadata=target_metadata(env),
        version_table_schema=schema,
        include_schemas=env == "platform",
        include_name=_include_name if env == "tenant" else None,
        render_item=_render_item,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=False,
    )
    with alembic_context.begin_transaction():
        alembic_context.run_migrations()


def upgrade_steps(script: ScriptDirectory, destination: str, heads: Any) -> list[MigrationStep]:
    """The steps ``alembic upgrade`` runs from ``heads`` to ``destination``, oldest first.

    Built from the public revision walk rather than the private ``_upgrade_revs`` that
    ``alembic.command.upgrade`` calls; tests/test_library_seams.py holds the two equal.
    """
    scripts = script.iterate_revisions(destination, heads, implicit_base=True)
    return [MigrationStep.upgrade_from_script(script.revision_map, s) for s in reversed(list(scripts))]


def downgrade_steps(script: ScriptDirectory, destination: str, heads: Any) -> list[MigrationStep]:
    """The steps ``alembic downgrade`` runs from ``heads`` to ``destination``, newest first
    (the public walk again, for the private ``_downgrade_revs``)."""
    scripts = script.iterate_revisions(heads, destination, select_for_downgrade=True)
    return [MigrationStep.downgrade_from_script(script.revision_map, s) for s in scripts]


def run_downgrade(connection: Connection, env: Env, schema: str, destination: str) -> None:
    """Downgrade ``schema`` to ``destination`` on ``connection`` (tests and repairs)."""
    script = script_directory(env)

    def do_downgrade(heads: Any, _context: MigrationContext) -> list[MigrationStep]:
        return downgrade_steps(script, destination, heads)

    with EnvironmentContext(alembic_config(env), script, fn=do_downgrade, destination_rev=destination):
        configure_and_run(connection, env, schema)


def run_upgrade(
    connection: Connection,
    env: Env,
    schema: str,
    destination: str = "head",
    version_locations: tuple[str, ...] = (),
) -> None:
    """Upgrade ``schema`` to ``destination`` on ``connection`` (no env.py loading)."""
    script = script_directory(env, version_locations)
    cfg = alembic_config(env, list(version_locations) or None)

    def do_upgrade(heads: Any, _context: MigrationContext) -> list[MigrationStep]:
        return upgrade_steps(script, destination, heads)

    with EnvironmentContext(cfg, script, fn=do_upgrade, destination_rev=destination):
        configure_and_run(connection, env, schema)


def current_revision(connection: Connection, schema: str) -> str | None:
    """The schema's revision, read directly.

    Not ``MigrationContext.get_current_revision()``: its has-table check filters
    ``pg_class`` in a way that gets slower with every tenant schema on the server;
    ``to_regclass`` is a name lookup through the catalog cache.
    """
    table = qualified_table(schema, VERSION_TABLE)
    if connection.scalar(text("SELECT to_regclass(:table)"), {"table": table}) is None:
        return None
    return connection.scalar(text(f"SELECT version_num FROM {table}"))


def upgrade_platform(connection: Connection) -> None:
    """Bring the shared schema to head, serialised against concurrent starts."""
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('atrium:platform-migrations'))"))
    run_upgrade(connection, "platform", PLATFORM_SCHEMA)
