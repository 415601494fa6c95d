"""Rooms, their messages and read markers: the rules of API.md §9.

Sequence numbers: a post increments the room's ``last_seq`` with one ``UPDATE ...
RETURNING`` in the post's own transaction. The statement takes the room's row lock, so
concurrent posts to one room queue on it, each reads the counter its predecessor
committed, and none gets a seq twice (the unique ``(chat_id, seq)`` index backs this).

Events: a write's events are kept while it runs and published once it has committed
(``_write``), so a write that rolls back publishes nothing, and whoever hears of a message
finds it in the database. Published after the lock is released, one room's events may
reach the channel out of seq order; each app process puts them back in order (live.py).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from litestar import Request
from litestar.channels import ChannelsPlugin
from litestar.plugins.problem_details import ProblemDetailsException
from sqlalchemy import ColumnElement, Uuid, bindparam, func, literal, literal_column, select, text
from sqlalchemy.dialects.postgresql import array, insert, psycopg

from atrium.platform.web.bodies import refuse_nul_characters
from atrium.platform.web.concurrency import (
    check_if_match,
    entity_tag,
    next_updated_at,
    next_updated_at_sql,
    row_tag,
)
from atrium.platform.web.errors import field_problem, problem, with_errors
from atrium.platform.web.idempotency import BeforeCommit
from atrium.platform.web.services import CrudService, not_found
from atrium.tenants.base import utcnow
from atrium.tenants.chats import events
from atrium.tenants.chats.live import publisher
from atrium.tenants.chats.models import Chat, ChatMarker, ChatMessage
from atrium.tenants.chats.schemas import MessageCreate, MessageRead, MessageUpdate, room_rules
from atrium.tenants.identity.models import User


def unread_count(caller: ColumnElement[Any]) -> ColumnElement[int]:
    """Messages after ``caller``'s read marker in the row's room."""
    marker = (
        select(ChatMarker.seq)
        .where(ChatMarker.chat_id == Chat.id, ChatMarker.user_id == caller)
        .scalar_subquery()
    )
    # Literal zeros, not parameters: the read path compiles this once, with the caller as
    # its only parameter.
    zero = literal_column("0")
    return func.greatest(Chat.last_seq - func.coalesce(marker, zero), zero)


UNREAD_COUNT = unread_count(bindparam("caller_id", type_=Uuid))


def member_of(caller: ColumnElement[Any]) -> ColumnElement[bool]:
    """``caller`` is one of the room's members (the GIN index on ``member_ids``)."""
    return Chat.member_ids.op("@>")(array([caller]))


# A post in one round trip: the room's counter (its row lock orders concurrent posts),
# the message with the seq it got, and the author's read marker (they have read what they
# wrote). No row: no such room, or not one of the caller's (404). The ORM's unit of work
# took three round trips and most of a post's CPU here (bench/RESULTS.md, chats).
_POST = f"""
WITH counted AS (
    UPDATE {Chat.__tablename__} SET last_seq = last_seq + 1, last_message_at = %(now)s,
        updated_at = {next_updated_at_sql(Chat.__table__.c.updated_at).compile(dialect=psycopg.dialect())}
    WHERE id = %(chat_id)s{{visible}}
    RETURNING last_seq, member_ids
), message AS (
    INSERT INTO {ChatMessage.__tablename__}
        (id, chat_id, seq, body, parent_id, owner_id, created_at, updated_at, deleted)
    SELECT %(id)s, %(chat_id)s, last_seq, %(body)s, %(parent_id)s, %(owner_id)s, %(now)s, %(now)s, false
    FROM counted
    RETURNING seq
), marker AS (
    INSERT INTO {ChatMarker.__tablename__} (chat_id, user_id, seq)
    SELECT %(chat_id)s, %(owner_id)s, seq FROM message
    ON CONFLICT (chat_id, user_id) DO UPDATE SET seq = greatest({ChatMarker.__tablename__}.seq, excluded.seq)
)
SELECT last_seq, member_ids FROM counted
"""
POST_IN_ANY_ROOM = _POST.format(visible="")
POST_AS_MEMBER = _POST.format(
    visible=" AND " + str(member_of(bindparam("owner_id", type_=Uuid)).compile(dialect=psycopg.dialect()))
)


def message_tag(message: ChatMessage | MessageRead) -> str:
    """A message's ETag; a message just posted (a ``MessageRead``) was stamped at its creation."""
    if isinstance(message, MessageRead):
        return entity_tag(message.id, message.created_at)
    return row_tag(message)


def render_message(message: ChatMessage | MessageRead) -> MessageRead:
    if isinstance(message, MessageRead):
        return message
    return msgspec.convert(message, MessageRead, from_attributes=True)


def _members_problem(problems: list[str]) -> Exception:
    return problem(
        422,
        "The members are not valid.",
        errors=[{"field": "member_ids", "message": message} for message in problems],
    )


class ChatService(CrudService[Chat]):
    model = Chat
    # Set by the application (live.py) when it has its channels plugin.
    publisher: events.Publisher | None = None
    # The events of the write under way, published after its commit (``_write``).
    _outbox: list[tuple[list[uuid.UUID], dict[str, Any]]] | None = None

    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return member_of(caller)

    def bind_request(self, request: Request[Any, Any, Any]) -> None:
        # Events go out through the app's channels plugin (absent in apps built without it).
        with contextlib.suppress(KeyError):
            self.publisher = publisher(request.app.plugins.get(ChannelsPlugin))

    found_again = "The direct room of this pair, which already exists: nothing is created."

    def created_status(self, item: Chat) -> int:
        return 200 if item.existing else 201

    async def publish(self, members: list[uuid.UUID], frame: dict[str, Any]) -> None:
        """Publish an event; inside a write (``_write``), once that write has committed."""
        if self._outbox is not None:
            self._outbox.append((members, frame))
        elif self.publisher is not None:
            await self.publisher(self.tenant.id, members, frame)

    async def _write(self, operation: Callable[[], Any], deleting: bool = False) -> None:
        self._outbox = []
        try:
            await super()._write(operation, deleting)
            committed = self._outbox
        finally:
            self._outbox = None
        for members, frame in committed:
            await self.publish(members, frame)

    # -- rooms ------------------------------------------------------------------------

    async def _check_members(
        self, member_ids: list[uuid.UUID], owner_id: uuid.UUID, kind: str, kept: Sequence[uuid.UUID] = ()
    ) -> None:
        """422 naming what is wrong with ``member_ids``; members the room already has
        (``kept``) stay valid even once deleted: a room keeps who was in it."""
        problems = []
        if len(set(member_ids)) != len(member_ids):
            problems.append("lists a user twice")
        if owner_id not in member_ids:
            problems.append("must include the room's owner")
        if kind == "direct" and len(set(member_ids)) != 2:
            problems.append("a direct room has exactly two members")
        joining = [m for m in member_ids if m not in kept]
        if not problems and joining:
            found = await self.session.scalar(select(func.count()).where(User.id.in_(joining)))
            if found != len(joining):
                problems.append("names a user who does not exist in this tenant")
        if problems:
            raise _members_problem(problems)

    async def create(self, data: msgspec.Struct, before_commit: BeforeCommit[Chat] | None = None) -> Chat:
        values = msgspec.structs.asdict(data)
        refuse_nul_characters(values)
        if values.get("owner_id") is None:
            values["owner_id"] = self.user.id
        self.check_new_owner(values["owner_id"])
        owner, kind = values["owner_id"], values["kind"]
        named = room_rules(values)
        members = list(values.get("member_ids") or [])
        # The creator is always a member: added when the list leaves them out.
        if owner not in members:
            members.insert(0, owner)
        try:
            await self._check_members(members, owner, kind)
        except ProblemDetailsException as refused:
            # A bad name and bad members: both named in one 422.
            raise with_errors(refused, named) from None
        if named:
            raise problem(422, "The room is not valid.", errors=named)
        values["member_ids"] = members
        if kind == "direct":
            pair = ":".join(sorted(str(m) for m in members))
            # One direct room per pair: concurrent creates of one pair queue here, and the
            # second finds the first's room.
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"chat:{pair}"}
            )
            found = await self.session.scalar(select(Chat).where(Chat.direct_pair == pair))
            if found is not None:
                found.existing = True
                found.unread_count = await self._unread(found.id)
                if before_commit is not None:
                    # Remembered like a create's answer: the key then means this room,
                    # and another body with it is 422.
                    await before_commit(found)
                await self.session.commit()
                return found
            values["direct_pair"] = pair
        item = Chat(**values)

        async def announce(room: Chat) -> None:
            for member in room.member_ids:
                await self.publish(
                    room.member_ids, events.event("member.added", room.id, 0, {"user_id": member})
                )
            if before_commit is not None:
                await before_commit(room)

        await self.add(item, announce)
        return item

    async def _unread(self, chat_id: uuid.UUID) -> int:
        return int(
            await self.session.scalar(
                select(unread_count(literal(self.user.id, Uuid))).where(Chat.id == chat_id)
            )
            or 0
        )

    async def prepare_update(self, item: Chat, changes: dict[str, Any]) -> dict[str, Any]:
        if item.kind == "direct":
            fixed = [
                name
                for name in ("name", "member_ids")
                if name in changes
                and (changes[name] if name == "name" else set(changes[name]))
                != (item.name if name == "name" else set(item.member_ids))
            ]
            if fixed:
                message = "a direct room's name and members never change"
                raise problem(
                    422,
                    "A direct room cannot change.",
                    errors=[{"field": f, "message": message} for f in fixed],
                )
            changes.pop("member_ids", None)
        owner = changes.get("owner_id", item.owner_id)
        if "member_ids" in changes:
            await self._check_members(changes["member_ids"], owner, item.kind, item.member_ids)
        elif owner not in item.member_ids:
            # A new owner joins the members: the owner is always one of them.
            changes["member_ids"] = [*item.member_ids, owner]
        return changes

    async def update(self, item_id: uuid.UUID, data: msgspec.Struct, if_match: str | None = None) -> Chat:
        before = await self.get(item_id)
        old_members = list(before.member_ids)
        item = await super().update(item_id, data, if_match)
        added = [m for m in item.member_ids if m not in old_members]
        removed = [m for m in old_members if m not in item.member_ids]
        for member in added:
            await self.publish(
                item.member_ids, events.event("member.added", item.id, item.last_seq, {"user_id": member})
            )
        for member in removed:
            # Sent to the remaining members and to the one removed, who receives nothing after.
            frame = events.event("member.removed", item.id, item.last_seq, {"user_id": member})
            await self.publish([*item.member_ids, member], frame)
        item.unread_count = await self._unread(item.id)
        return item

    # -- messages ---------------------------------------------------------------------

    async def _room(self, chat_id: uuid.UUID, lock: bool = False) -> Chat:
        return await self.get(chat_id, lock=lock)

    async def post(
        self, chat_id: uuid.UUID, data: MessageCreate, before_commit: BeforeCommit[MessageRead] | None
    ) -> MessageRead:
        refuse_nul_characters({"body": data.body})
        if data.parent_id is not None:
            await self._room(chat_id)  # 404 before anything is said about the parent
            await self._check_parent(chat_id, data.parent_id)
        now = utcnow()
        message = MessageRead(
            id=uuid.uuid4(),
            chat_id=chat_id,
            seq=0,
            body=data.body,
            parent_id=data.parent_id,
            owner_id=self.user.id,
            created_at=now,
            edited_at=None,
            deleted=False,
        )
        everyone = self.visible_to_caller() is None  # chats:manage: any room

        async def adding() -> None:
            connection = await self.session.connection()
            counted = (
                await connection.exec_driver_sql(
                    POST_IN_ANY_ROOM if everyone else POST_AS_MEMBER,
                    {
                        "id": message.id,
                        "chat_id": chat_id,
                        "body": message.body,
                        "parent_id": message.parent_id,
                        "owner_id": message.owner_id,
                        "now": now,
                    },
                )
            ).first()
            if counted is None:
                raise not_found(Chat)
            message.seq, members = counted
            if before_commit is not None:
                await before_commit(message)
            await self.publish(members, events.event(events.CREATED, chat_id, message.seq, message))

        await self._write(adding)
        return message

    async def _check_parent(self, chat_id: uuid.UUID, parent_id: uuid.UUID) -> None:
        parent = (
            await self.session.execute(
                select(ChatMessage.chat_id, ChatMessage.parent_id).where(ChatMessage.id == parent_id)
            )
        ).first()
        if parent is None or parent.chat_id != chat_id:
            await self.session.rollback()
            raise field_problem(422, "parent_id", "no such message in this room")
        if parent.parent_id is not None:
            await self.session.rollback()
            raise field_problem(422, "parent_id", "a reply cannot be replied to; reply to its top-level one")

    async def message(self, chat_id: uuid.UUID, message_id: uuid.UUID) -> ChatMessage:
        """One message of a room the caller may see (404 otherwise, as for the room)."""
        await self._room(chat_id)
        message = await self.session.scalar(
            select(ChatMessage).where(ChatMessage.id == message_id, ChatMessage.chat_id == chat_id)
        )
        if message is None:
            raise not_found(ChatMessage)
        return message

    async def _message_to_write(
        self, chat_id: uuid.UUID, message_id: uuid.UUID, if_match: str | None
    ) -> tuple[Chat, ChatMessage]:
        room = await self._room(chat_id)
        message = await self.session.scalar(
            select(ChatMessage)
            .where(ChatMessage.id == message_id, ChatMessage.chat_id == chat_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if message is None:
            raise not_found(ChatMessage)
        if message.owner_id != self.user.id and not self.may_manage():
            raise self._refuse_beyond_ownership("This message is another user's.")
        # Compared under the row lock taken above: a concurrent edit with the same tag waits, then gets 412.
        if if_match is not None:  # the tag is made only when compared
            check_if_match(if_match, row_tag(message))
        return room, message

    async def edit(
        self, chat_id: uuid.UUID, message_id: uuid.UUID, data: MessageUpdate, if_match: str | None = None
    ) -> ChatMessage:
        refuse_nul_characters({"body": data.body})
        room, message = await self._message_to_write(chat_id, message_id, if_match)
        if message.deleted:
            raise problem(
                409, "This message was deleted: it cannot be edited.", type_="invalid-state", state="deleted"
            )
        message.body, message.edited_at = data.body, utcnow()
        await self._commit_message(room, message, "message.updated")
        return message

    async def remove(self, chat_id: uuid.UUID, message_id: uuid.UUID, if_match: str | None = None) -> None:
        room, message = await self._message_to_write(chat_id, message_id, if_match)
        if message.deleted:
            await self.session.rollback()
            return
        # It keeps its seq (its place in the room), with an empty body.
        message.body, message.deleted, message.edited_at = "", True, utcnow()
        await self._commit_message(room, message, "message.deleted")

    async def _commit_message(self, room: Chat, message: ChatMessage, kind: str) -> None:
        message.updated_at = next_updated_at(message.updated_at)

        async def flushing() -> None:
            await self.session.flush()
            await self.publish(
                room.member_ids, events.event(kind, room.id, message.seq, render_message(message))
            )

        await self._write(flushing)

    async def messages(
        self, chat_id: uuid.UUID, before: int | None, after: int | None, limit: int
    ) -> list[ChatMessage]:
        await self._room(chat_id)
        statement = select(ChatMessage).where(ChatMessage.chat_id == chat_id)
        if before is not None:
            statement = statement.where(ChatMessage.seq < before)
        if after is not None:
            statement = statement.where(ChatMessage.seq > after).order_by(ChatMessage.seq.asc())
        else:
            statement = statement.order_by(ChatMessage.seq.desc())
        return list((await self.session.scalars(statement.limit(limit))).all())

    # -- read state -------------------------------------------------------------------

    async def _move_marker(self, chat_id: uuid.UUID, seq: int) -> None:
        """The caller's marker to ``seq``, never back."""
        statement = insert(ChatMarker).values(chat_id=chat_id, user_id=self.user.id, seq=seq)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[ChatMarker.chat_id, ChatMarker.user_id],
                set_={"seq": func.greatest(ChatMarker.seq, statement.excluded.seq)},
            )
        )

    async def mark_read(
        self, chat_id: uuid.UUID, seq: int, before_commit: BeforeCommit[Chat] | None = None
    ) -> Chat:
        room = await self._room(chat_id)
        # Not past the last message: a marker ahead would hide messages not yet written.
        target = min(seq, room.last_seq)

        async def moving() -> None:
            await self._move_marker(chat_id, target)
            marker = await self.session.scalar(
                select(ChatMarker.seq).where(
                    ChatMarker.chat_id == chat_id, ChatMarker.user_id == self.user.id
                )
            )
            frame = events.event(
                "read.updated", chat_id, room.last_seq, {"user_id": self.user.id, "seq": marker}
            )
            await self.publish(room.member_ids, frame)
            room.unread_count = await self._unread(chat_id)
            if before_commit is not None:
                await before_commit(room)

        await self._write(moving)
        return room
