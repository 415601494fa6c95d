"""Chat events as the REST writes publish them; live.py delivers them to sockets.

An event is published with the room's members at that moment, and a socket delivers it
only to a user among them: a member removed from a room stops receiving its events with
the first event after the change (which is ``member.removed`` itself, sent to them too).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

# Publishes (tenant id, members, event) to every app process; set by live.py when the
# application starts with its channels plugin, absent in apps built without it.
Publisher = Callable[[uuid.UUID, Sequence[uuid.UUID], dict[str, Any]], Awaitable[None]]


def event(kind: str, chat_id: uuid.UUID, seq: int, data: Any) -> dict[str, Any]:
    """The frame of API.md §9: ``type``, ``chat_id``, ``seq``, ``data``."""
    return {"type": kind, "chat_id": str(chat_id), "seq": seq, "data": msgspec.to_builtins(data)}
