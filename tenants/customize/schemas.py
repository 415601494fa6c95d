"""Bodies of /customize."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import msgspec

from atrium.platform.web.bodies import Schema


class CustomizeRead(msgspec.Struct):
    id: uuid.UUID
    data: dict[str, Any]
    tenant_id: uuid.UUID
    created_at: datetime.datetime
    updated_at: datetime.datetime


class CustomizeCreate(Schema):
    """``tenant_id`` is not accepted: the server always sets the current tenant."""

    data: dict[str, Any] = msgspec.field(default_factory=dict)


class CustomizeUpdate(Schema):
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
