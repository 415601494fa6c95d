"""Chat events as the REST writes publish them; live.py delivers them to sockets.

An event is published with the room's members at that moment, and a socket delivers it
only to a user among them: a member removed from a room stops receiving its events with
the first event after the change (which is ``member.removed`` itself, sent to them too).

Events are published once the write has committed (services.py), never before: a write
that rolls back publishes nothing, and a client that hears of a message finds it when it
reads or resumes. Over the channel an event is a header line (members, type, room, seq)
and the frame as sockets receive it, encoded once by the publisher: each app process reads
the small header and sends the frame's text untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

# Publishes (tenant id, members, event) to every app process; set by live.py when the
# application starts with its channels plugin, absent in apps built without it.
Publisher = Callable[[uuid.UUID, Sequence[uuid.UUID], dict[str, Any]], Awaitable[None]]

CREATED = "message.created"


class Header(msgspec.Struct, frozen=True):
    """What an app process needs of an event to route and order it."""

    members: list[str]
    type: str
    chat_id: str
    seq: int


_encode = msgspec.json.Encoder().encode
_decode_header = msgspec.json.Decoder(Header).decode


def event(kind: str, chat_id: uuid.UUID, seq: int, data: Any) -> dict[str, Any]:
    """The frame of API.md §9: ``type``, ``chat_id``, ``seq``, ``data``."""
    return {"type": kind, "chat_id": str(chat_id), "seq": seq, "data": msgspec.to_builtins(data)}


def envelope(members: Sequence[uuid.UUID], frame: dict[str, Any]) -> bytes:
    """The channel message: the header, a newline, the frame (JSON escapes newlines in
    strings, so the first newline is the separator)."""
    header = Header([str(m) for m in members], frame["type"], frame["chat_id"], frame["seq"])
    return _encode(header) + b"\n" + _encode(frame)


def open_envelope(raw: bytes) -> tuple[Header, str]:
    """The header and the frame's text; ``msgspec.DecodeError`` or ``ValueError`` when
    ``raw`` is not an envelope."""
    head, newline, frame = raw.partition(b"\n")
    if not newline:
        raise ValueError("not a chat event")
    return _decode_header(head), frame.decode()
