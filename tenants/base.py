"""The declarative base of every table that lives inside a tenant schema.

Tenant tables carry no schema in their metadata: the transaction's ``search_path``
(bound from the registry, see ``atrium.platform.db.binding``) decides which tenant's
tables a statement touches.
"""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.base import CommonTableAttributes, create_registry
from advanced_alchemy.mixins import AuditColumns
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ARRAY, Uuid, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

tenant_registry = create_registry()


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class TenantTable(CommonTableAttributes, DeclarativeBase):
    """Every table inside a tenant schema, with no columns of its own.

    For internal tables that are not API resources and keep
    to the columns they need: every relation and index of a tenant table is loaded by
    each PostgreSQL backend that plans against it (bench/RESULTS.md, fourth pass).
    """

    registry = tenant_registry


class TenantBase(AuditColumns, TenantTable):
    """UUID id plus advanced-alchemy's audit columns, with server defaults added.

    advanced-alchemy's ``UUIDAuditBase`` is not used as is: its primary-key mixin adds
    an ``sa_orm_sentinel`` column to every table, and its audit columns have no server
    default; the tenant schema must hold exactly the seed's columns, with ``now()``
    defaults that also apply to rows written by plain SQL.
    """

    __abstract__ = True

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()"), sort_order=-100
    )
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTimeUTC(timezone=True), default=utcnow, server_default=func.now(), nullable=False, sort_order=3002
    )
    updated_at: Mapped[datetime.datetime] = mapped_column(
        DateTimeUTC(timezone=True),
        default=utcnow,
        onupdate=utcnow,
        server_default=func.now(),
        nullable=False,
        sort_order=3003,
    )


# ``Column.info`` mark of an array of user ids (a project's members, an event's attendees):
# deleting a user takes them out of every such column (identity's user deletion finds the
# columns by this mark, as it finds ``owner_id`` columns by their foreign keys).
USER_IDS = "user_ids"
# ``Column.info`` mark of an array of user ids that always holds the row's owner (a
# project's members): a user deletion that hands the row to an heir adds the heir to it.
# ``True``, or ``(column, value)``: only on the rows where that column has that value.
HOLDS_OWNER = "holds_owner"


def user_ids_column(*, holds_owner: bool = False) -> Mapped[list[uuid.UUID]]:
    """An array of this tenant's user ids, kept free of deleted users (and holding the row's
    owner, with ``holds_owner``)."""
    info = {USER_IDS: True, HOLDS_OWNER: holds_owner}
    return mapped_column(ARRAY(Uuid), default=list, server_default="{}", info=info)


tenant_metadata = TenantTable.metadata
