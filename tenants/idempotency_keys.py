"""The answers to POSTs sent with an ``Idempotency-Key`` (API.md §5, "Retries").

Kept in the tenant's own schema and written in the same transaction as the row the POST
created, so a retry finds the answer in any app process, with or without Redis, and a
key is never recorded for a write that did not commit. ``atrium.platform.web.idempotency``
reads and writes them.
"""

from __future__ import annotations

import datetime
import uuid

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from atrium.tenants.base import TenantTable

KEY_MAX_LENGTH = 255
# The primary key (user_id, key): a second insert of one key fails on it by this name.
KEY_CONSTRAINT = "pk_idempotency_keys"


class IdempotencyKey(TenantTable):
    __tablename__ = "idempotency_keys"
    # Expired keys are purged oldest first (idempotency.py): without this index each
    # purge would read the whole table.
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    # CASCADE: a user's keys are theirs alone and go with them.
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX_LENGTH), primary_key=True)
    # SHA-256 of the method, the path and the body: the same key with another body is refused.
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[int] = mapped_column(Integer)
    # The answer's JSON body, byte for byte as first sent.
    body: Mapped[bytes] = mapped_column(LargeBinary)
    # The answer's headers that describe the row (Location, ETag), as first sent.
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, server_default="{}", default=dict)
    # The transaction's time, as the lookup's ``now()`` reads it: no clock of an app process.
    created_at: Mapped[datetime.datetime] = mapped_column(
        DateTimeUTC(timezone=True), server_default=func.now(), nullable=False
    )
