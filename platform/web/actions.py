"""Actions: state changes that are more than a field update (API.md §5).

``POST /<resource>/{id}/<action>`` answers 200 with the row. The resource declares its
actions (``ResourceSpec.actions``) and its service does the work in a method named by the
action; the row is locked while its state is checked, so two concurrent actions never both
pass the check. A state that does not allow the action is 409 with the current state in the
problem (``CrudService.check_state``), as is a ``PATCH`` of the state column outside the
service's ``transitions``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import msgspec


@dataclass(frozen=True)
class Action:
    name: str  # the path segment, e.g. "finalize"
    # The service method that does it: ``async def <run>(self, item, data) -> None``.
    run: str
    # States of the row that allow it; None: any.
    allowed: Collection[str] | None = None
    # The JSON body it takes, if any.
    body: type[msgspec.Struct] | None = None
    permission: Literal["write", "manage"] = "write"
    summary: str = ""
