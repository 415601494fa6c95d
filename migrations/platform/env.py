"""Alembic environment for the platform schema; the logic lives in atrium.platform.db.alembic_runner.

Run from the command line with DATABASE_URL set, e.g.
`alembic -n platform revision --autogenerate -m '…'`.
Operators use `atrium db upgrade`.
"""

import os

from sqlalchemy import create_engine

from atrium.platform.db.alembic_runner import configure_and_run
from atrium.platform.settings import to_sqlalchemy_url
from atrium.platform.tenancy.naming import PLATFORM_SCHEMA

engine = create_engine(to_sqlalchemy_url(os.environ["DATABASE_URL"]))
with engine.begin() as connection:
    configure_and_run(connection, "platform", PLATFORM_SCHEMA)
