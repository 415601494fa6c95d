"""Threaded discussions, shared by projects' message boards and forums (API.md §8).

A discussion is a top-level post (with a title) or a reply to one (without): one level
deep, like Basecamp's messages and Discourse's topics and posts. Both kinds live in one
table per area, in a container (a project, a forum); each area's table is this mixin
plus its container column, and its service is ``ThreadService`` plus what the container
allows (archived projects, locked topics).

Counting replies: ``reply_count`` and ``last_reply_at`` of the top-level discussion are
changed by one ``UPDATE`` in the reply's own transaction, which also takes the parent's
row lock, so concurrent replies queue on it and none is lost or counted twice; the
parent's shape (top level, same container) is checked by that same statement.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import msgspec
from advanced_alchemy.types import DateTimeUTC
from litestar.plugins.problem_details import ProblemDetailsException
from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    Integer,
    String,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from atrium.platform.web.bodies import Schema, name_text, written_text
from atrium.platform.web.concurrency import next_updated_at_sql
from atrium.platform.web.errors import field_problem, problem, with_errors
from atrium.platform.web.listing import ListRequest
from atrium.platform.web.services import CrudService, row_name
from atrium.platform.web.validation import BodyRule
from atrium.tenants.base import utcnow

TITLE_MAX = 200
BODY_MAX = 50_000

# Fields of both kinds of discussion's bodies.
OwnerId = Annotated[uuid.UUID, msgspec.Meta(description="The user who owns the row; the caller by default.")]
Title = name_text(TITLE_MAX, "Required on a top-level discussion, absent on a reply.")
Body = written_text(BODY_MAX)
ParentId = Annotated[
    uuid.UUID,
    msgspec.Meta(
        description="The top-level discussion (same project or forum) this replies to; null: top level."
    ),
]
ReplyCount = Annotated[int, msgspec.Meta(description="Server-set: the replies of a top-level discussion.")]
LastReplyAt = Annotated[
    datetime.datetime, msgspec.Meta(description="Server-set: when the latest reply was written.")
]


class DiscussionRead(msgspec.Struct, kw_only=True):
    """The fields both kinds of discussion show; each adds its container's."""

    id: uuid.UUID
    title: str | None
    body: str
    parent_id: ParentId | None
    reply_count: ReplyCount
    last_reply_at: LastReplyAt | None
    owner_id: OwnerId
    created_at: datetime.datetime
    updated_at: datetime.datetime


TITLE_MISSING = "required for a top-level discussion"
ON_A_REPLY = "only a top-level discussion has it; a reply has none"


def shape_rules(*top_level_only: str) -> BodyRule:
    """A body rule (bodies.Schema) of a new discussion: a top-level one has a title; a reply
    has neither a title nor ``top_level_only`` (forums: pinned, locked), not even false."""

    def rule(values: dict[str, Any]) -> list[dict[str, str]]:
        if "parent_id" not in values:  # not given in a form the types accept
            return []
        if values["parent_id"] is None:
            return [] if values.get("title") is not None else [{"field": "title", "message": TITLE_MISSING}]
        given = [
            f for f in ("title", *top_level_only) if values.get(f, msgspec.UNSET) not in (None, msgspec.UNSET)
        ]
        return [{"field": f, "message": ON_A_REPLY} for f in given]

    return rule


class DiscussionCreate(Schema, kw_only=True):
    title: Title | None = None
    body: Body
    parent_id: ParentId | None = None
    owner_id: OwnerId | None = None

    body_rules = (shape_rules(),)


class DiscussionUpdate(Schema, kw_only=True):
    title: Title | msgspec.UnsetType = msgspec.UNSET
    body: Body | msgspec.UnsetType = msgspec.UNSET
    owner_id: OwnerId | msgspec.UnsetType = msgspec.UNSET


class DiscussionColumns:
    """The columns every discussion table has besides its container's."""

    title: Mapped[str | None] = mapped_column(String(TITLE_MAX))
    body: Mapped[str] = mapped_column(Text)
    reply_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_reply_at: Mapped[datetime.datetime | None] = mapped_column(DateTimeUTC(timezone=True))

    @declared_attr
    def parent_id(cls) -> Mapped[uuid.UUID | None]:
        # CASCADE: deleting a top-level discussion deletes its replies (API.md §8).
        return mapped_column(ForeignKey(f"{cls.__tablename__}.id", ondelete="CASCADE"))  # type: ignore[attr-defined]

    @declared_attr
    def owner_id(cls) -> Mapped[uuid.UUID]:
        # RESTRICT: a deleted user's discussions are handed to another user first.
        return mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)


def shape_constraint(table: str) -> CheckConstraint:
    """A top-level discussion has a title, a reply none."""
    return CheckConstraint("(parent_id IS NULL) = (title IS NOT NULL)", name="title_on_top_level")


def replies_oldest_first(request: ListRequest, columns: Any) -> list[Any]:
    """A thread's replies (``parent_id=<id>``) read oldest first; anything else newest first."""
    if request.filtered("parent_id") and not request.has_null("parent_id"):
        return [columns.created_at.asc(), columns.id.asc()]
    return [columns.created_at.desc(), columns.id.desc()]


class ThreadService(CrudService[Any]):
    """Shape rules and reply counts of a discussion table; subclasses name the container
    and check that it may be written to."""

    # The container column (``project_id``, ``forum_id``) and what the API calls it.
    container: ClassVar[str]
    # Fields only a top-level discussion may carry besides its title (forums: pinned, locked).
    top_level_only: ClassVar[Sequence[str]] = ()

    async def check_container(self, container_id: uuid.UUID) -> None:
        """422 when the container does not exist or the caller cannot see it, 409 when it
        refuses writes; called first in every write, so that its locks come first."""
        raise NotImplementedError

    def refuse_parent(self, parent: Any) -> None:
        """A reply to ``parent`` (a top-level discussion of the container) is refused: 409
        (a locked topic). Nothing by default."""
        return None

    def locks_to_update(self, changes: dict[str, Any]) -> bool:
        # Replies move a top-level discussion's counters meanwhile: a change waits for those
        # in flight, so that it answers the row as it wrote it, and a lock (forums) refuses
        # every reply that comes after its answer.
        return True

    def _top_level_fields(self) -> tuple[str, ...]:
        return ("title", *self.top_level_only)

    @staticmethod
    def _refuse_on_a_reply(fields: list[str]) -> None:
        """422 naming each field a reply was given that only a top-level discussion has."""
        if fields:
            errors = [{"field": f, "message": ON_A_REPLY} for f in fields]
            raise problem(422, "A reply takes a body only.", errors=errors)

    # -- create -----------------------------------------------------------------------

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        parent_id, container_id = values.get("parent_id"), values[self.container]
        errors = shape_rules(*self.top_level_only)(values)
        try:
            await self.check_container(container_id)
        except ProblemDetailsException as refused:
            if refused.status_code != 422:
                raise
            # A missing container, a body of the wrong shape and a bad parent: all named in
            # one 422 (a parent found can only be of another container then).
            raise with_errors(refused, errors + await self._parent_errors(parent_id, container_id)) from None
        if errors:
            errors += await self._parent_errors(parent_id, container_id)
            raise problem(422, "The discussion is not valid.", errors=errors)
        if parent_id is None:
            # Not given: false (a topic is neither pinned nor locked until a moderator says so).
            return {**values, **{n: False for n in self.top_level_only if values.get(n) is msgspec.UNSET}}
        for name in self.top_level_only:
            values.pop(name, None)
        now = utcnow()
        values["created_at"] = values["updated_at"] = now
        await self._count_reply(parent_id, values[self.container], now)
        return values

    async def _count_reply(
        self, parent_id: uuid.UUID, container_id: uuid.UUID, now: datetime.datetime
    ) -> None:
        """Count the new reply on its parent, in this transaction; refuse a parent that is
        not a top-level discussion of the same container."""
        model = self.model
        counted = await self.session.execute(
            update(model)
            .where(
                model.id == parent_id,
                model.parent_id.is_(None),
                getattr(model, self.container) == container_id,
                *self.open_for_replies(),
            )
            .values(
                reply_count=model.reply_count + 1,
                # Never backwards: a reply whose clock read earlier may take the lock later.
                last_reply_at=func.greatest(func.coalesce(model.last_reply_at, now), now),
                updated_at=next_updated_at_sql(model.updated_at),
            )
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
        if counted.first() is not None:
            return
        # The failure path only: why the parent was not counted.
        parent = await self._visible_parent(parent_id)
        if (error := self._parent_error(parent, container_id)) is not None:
            raise field_problem(422, error["field"], error["message"])
        self.refuse_parent(parent)
        raise field_problem(422, "parent_id", "no such discussion")

    async def _parent_errors(
        self, parent_id: uuid.UUID | None, container_id: uuid.UUID
    ) -> list[dict[str, str]]:
        """What is wrong with the parent, for a 422 that names other fields too (the write
        goes no further, so a locked topic's 409 is not among them)."""
        if parent_id is None:
            return []
        error = self._parent_error(await self._visible_parent(parent_id), container_id)
        return [error] if error else []

    async def _visible_parent(self, parent_id: uuid.UUID) -> Any:
        """The discussion ``parent_id`` names, if the caller may see it."""
        statement = select(self.model).where(self.model.id == parent_id)
        if (visible := self.visible_to_caller()) is not None:
            statement = statement.where(visible)
        return await self.session.scalar(statement)

    def _parent_error(self, parent: Any, container_id: uuid.UUID) -> dict[str, str] | None:
        """Why a reply cannot go under ``parent`` (None: no such discussion) in the container
        ``container_id``; None when its shape and place allow it."""
        if parent is None:
            message = "no such discussion"
        elif parent.parent_id is not None:
            message = "a reply cannot be replied to; reply to its top-level discussion"
        elif getattr(parent, self.container) != container_id:
            message = f"a discussion of another {self.container.removesuffix('_id')}"
        else:
            return None
        return {"field": "parent_id", "message": message}

    def open_for_replies(self) -> list[ColumnElement[bool]]:
        """Conditions a parent must meet to be replied to (forums: not locked)."""
        return []

    # -- update and delete ------------------------------------------------------------

    async def prepare_update(self, item: Any, changes: dict[str, Any]) -> dict[str, Any]:
        await self.check_container(getattr(item, self.container))
        if item.parent_id is not None:
            self._refuse_on_a_reply([name for name in self._top_level_fields() if name in changes])
        return changes

    async def before_delete(self, item: Any) -> None:
        await self.check_container(getattr(item, self.container))
        if item.parent_id is None:
            return
        model = self.model
        # The parent first, as a new reply takes it: deletes and replies of one thread
        # queue there, and the statements after it see what those committed.
        await self.session.execute(select(model.id).where(model.id == item.parent_id).with_for_update())
        still_there = await self.session.scalar(select(model.id).where(model.id == item.id).with_for_update())
        if still_there is None:
            raise problem(404, f"No such {row_name(model)}.")
        remaining = select(func.max(model.created_at)).where(
            model.parent_id == item.parent_id, model.id != item.id
        )
        await self.session.execute(
            update(model)
            .where(model.id == item.parent_id)
            .values(
                reply_count=model.reply_count - 1,
                last_reply_at=remaining.scalar_subquery(),
                updated_at=next_updated_at_sql(model.updated_at),
            )
            .execution_options(synchronize_session=False)
        )
