"""Alembic environment for the tenant schema; the logic lives in atrium.platform.db.alembic_runner.

Run from the command line with DATABASE_URL set, e.g.
`alembic -n tenant -x schema=tenant_demo revision --autogenerate -m '…'`.
Operators migrate tenants with `atrium tenants migrate`, which also records each
tenant's version in the registry.
"""

import os

from alembic import context
from sqlalchemy import create_engine

from atrium.platform.db.alembic_runner import configure_and_run
from atrium.platform.settings import to_sqlalchemy_url
from atrium.platform.tenancy.naming import validate_schema

schema = validate_schema(context.get_x_argument(as_dictionary=True)["schema"])
engine = create_engine(to_sqlalchemy_url(os.environ["DATABASE_URL"]))
with engine.begin() as connection:
    configure_and_run(connection, "tenant", schema)
