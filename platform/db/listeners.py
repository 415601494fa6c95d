"""SQLAlchemy event listeners attached once per target."""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event

# Listeners already attached, per target. Not ``event.contains``: SQLAlchemy's event
# registry keys listeners by ``id(target)`` and keeps the key after the target is collected,
# so a new maker that happened to reuse a dead one's address looked bound when it was not,
# and its sessions ran unbound (every app in one process builds a maker: the test suite hit
# it, 1 run in ~10).
_ATTACHED: weakref.WeakKeyDictionary[Any, set[tuple[str, Any]]] = weakref.WeakKeyDictionary()


def listen_once(target: Any, identifier: str, fn: Any) -> None:
    """``event.listen(target, identifier, fn)`` unless this very listener is already there."""
    attached = _ATTACHED.setdefault(target, set())
    if (identifier, fn) not in attached:
        event.listen(target, identifier, fn)
        attached.add((identifier, fn))
