"""What is special about forums' discussions: moderation (pinning, locking) and locked topics."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import msgspec
from sqlalchemy import ColumnElement, select

from atrium.platform.web.errors import field_problem, problem
from atrium.platform.web.services import CrudService
from atrium.tenants.discussions import ThreadService
from atrium.tenants.forums.models import Forum, ForumDiscussion
from atrium.tenants.forums.schemas import MODERATED


class ForumService(CrudService[Forum]):
    model = Forum


class ForumDiscussionService(ThreadService):
    model = ForumDiscussion
    container = "forum_id"
    top_level_only: ClassVar[tuple[str, ...]] = MODERATED

    async def check_container(self, container_id: uuid.UUID) -> None:
        # FOR KEY SHARE, before the thread's row: a forum's delete (which locks the forum,
        # then each topic) waits for this write instead of crossing it in a deadlock.
        found = await self.session.scalar(
            select(Forum.id).where(Forum.id == container_id).with_for_update(read=True, key_share=True)
        )
        if found is None:
            raise field_problem(422, "forum_id", "no such forum")

    def open_for_replies(self) -> list[ColumnElement[bool]]:
        return [ForumDiscussion.locked.is_(False)]

    def refuse_parent(self, parent: Any) -> None:
        if parent.locked:
            raise problem(
                409,
                "This topic is locked: it takes no replies (a moderator may unlock it).",
                type_="invalid-state",
                state="locked",
            )

    def _check_moderation(self, changes: dict[str, Any], current: dict[str, Any]) -> None:
        """403 when the caller sets ``pinned`` or ``locked`` without ``manage`` (sending the
        value a row already has changes nothing and is let through)."""
        moved = [
            name
            for name in MODERATED
            if changes.get(name, msgspec.UNSET) not in (msgspec.UNSET, current[name])
        ]
        if moved and not self.may_manage():
            raise self._refuse_beyond_ownership(
                f"Pinning and locking are for moderators ({', '.join(moved)})."
            )

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        # On a reply they are a shape error (422), which the thread's rules answer.
        if values.get("parent_id") is None:
            self._check_moderation(values, {name: False for name in MODERATED})
        return await super().prepare_create(values)

    async def prepare_update(self, item: ForumDiscussion, changes: dict[str, Any]) -> dict[str, Any]:
        changes = await super().prepare_update(item, changes)
        self._check_moderation(changes, {name: getattr(item, name) for name in MODERATED})
        return changes
