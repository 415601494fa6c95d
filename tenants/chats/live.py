"""The live socket of chats, ``/chats/ws`` (API.md §9), and the publisher of its events.

One channel per tenant (``platform.live.tenant_channel``) carries every room's events,
each with the room's members at that moment; each app process subscribes once per
tenant with sockets there (``_Hub``) and sends each event to its members' sockets. So a
removed member's sockets drop the room with the very event that removes them, and no
socket learns of rooms it may not see.

Order: events are published after their write commits (services.py), so two posts to
one room, committed one after the other (the room's row lock), may reach the channel in
the other order when different tasks or processes publish them. Each process puts a
room's events back in seq order (``_Order``): a ``message.created`` waits for the one
before it, and any other event for the message or marker it names, at most ``HOLD``
seconds (an event lost to a Redis outage is not waited for longer; ``resume`` finds it).
A ``resume`` is answered from the database, and live message events at or below what it
sent are not sent twice.

Close codes: 4401 no or bad token (or none within 5 s; or, later, the token revoked or its
user deleted), 4403 a ``resume`` of a room the caller may not see (or, later, the read
permission taken), 4410 the tenant was suspended or is being deleted (both checked on every
tenant change the resolver hears of, which every change of users, roles and links and every
logout publishes), 4429 too many sockets for one user in this
process, 1009 a frame over 64 KiB, 1008 more than 20 frames in a second, 1013 fell
``OUTBOX`` events behind (each socket has its own queue and writer). Idle sockets are pinged by the server
(uvicorn's ``ws_ping_interval``), and those that do not answer are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import time
import uuid
import weakref
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, WebSocketDisconnect
from litestar.security.jwt import Token
from sqlalchemy import Uuid, bindparam, select
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from atrium.platform.db.read_transaction import ReadTransaction
from atrium.platform.live import tenant_channel
from atrium.platform.security.callers import AuthUser
from atrium.platform.security.permissions import manage, read
from atrium.platform.security.tokens import TokenAuth
from atrium.platform.settings import Settings
from atrium.platform.tenancy.middleware import TenancyPlugin
from atrium.platform.tenancy.naming import normalize_host
from atrium.platform.tenancy.resolution import ALL_TENANTS, ResolvedTenant
from atrium.tenants.chats import events
from atrium.tenants.chats.models import Chat, ChatMessage
from atrium.tenants.chats.schemas import MessageRead

logger = logging.getLogger(__name__)

TOPIC = "chats"
AUTH_WINDOW = 5.0
FRAME_MAX = 64 * 1024
FRAMES_PER_SECOND = 20
SOCKETS_PER_USER = 20
RESUME_MAX = 1_000
# Rooms whose order a tenant's subscription keeps in this process before it forgets the
# idle ones (nothing held): a room forgotten starts afresh with its next event.
ROOMS_REMEMBERED = 10_000
# How long an event waits for an earlier one of its room (see the module's docstring).
HOLD = 0.5
# How long a post waits for Redis to take its event before giving up on it (logged).
PUBLISH_WAIT = 2.0
CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_TOO_MANY, CLOSE_TENANT_GONE = 4401, 4403, 4429, 4410
CLOSE_TOO_BIG, CLOSE_POLICY = 1009, 1008
# Events a socket may fall behind (queued for it, beyond what the network holds) before it
# is closed with 1013: its client reconnects and resumes from the last seq it has. A
# socket's sends never hold up the others': each has its own queue and writer.
OUTBOX = 1_000
CLOSE_TOO_SLOW = 1013


def _sql(statement: Any) -> str:
    return str(statement.compile(dialect=psycopg.dialect()))


ROOM_MEMBERS = _sql(select(Chat.member_ids).where(Chat.id == bindparam("chat_id", type_=Uuid)))
MESSAGES_AFTER = (
    _sql(
        select(*(ChatMessage.__table__.c[f] for f in MessageRead.__struct_fields__))
        .where(
            ChatMessage.chat_id == bindparam("chat_id", type_=Uuid),
            ChatMessage.seq > bindparam("after"),
        )
        .order_by(ChatMessage.seq)
    )
    + f" LIMIT {RESUME_MAX}"
)


# One publish at a time per app and process, in the order the writes reached it (just
# after their commits): concurrent publishes on several Redis connections would reach the
# channel in any order, and each one out of order makes subscribers wait (``_Order``).
_publishing: weakref.WeakKeyDictionary[ChannelsPlugin, asyncio.Lock] = weakref.WeakKeyDictionary()


def publisher(channels: ChannelsPlugin) -> events.Publisher:
    lock = _publishing.get(channels)
    if lock is None:
        lock = _publishing[channels] = asyncio.Lock()

    async def publish(tenant_id: uuid.UUID, members: Sequence[uuid.UUID], frame: dict[str, Any]) -> None:
        data = events.envelope(members, frame)
        try:
            # Bounded, the wait for the lock too: a Redis that stops answering must not hold
            # every later post back.
            async with asyncio.timeout(PUBLISH_WAIT), lock:
                await channels.wait_published(data, tenant_channel(tenant_id, TOPIC))
        except Exception as exc:
            # The write stands; clients that missed the event get it with ``resume``.
            logger.warning("could not publish a chat event (%s); clients catch up by resume", exc)

    return publish


class _Socket:
    """One authenticated socket: what its resumes sent, and its frame budget."""

    def __init__(
        self,
        socket: WebSocket[Any, Any, Any],
        user: AuthUser,
        tenant: ResolvedTenant,
        token: Token,
        token_auth: TokenAuth,
    ) -> None:
        self.socket, self.user, self.tenant = socket, user, tenant
        self.token, self.token_auth = token, token_auth
        self.host = _host(socket)
        self.me = str(user.id)
        self.sending = asyncio.Lock()
        # Per room: the highest message seq a resume sent, whose live events are not sent
        # again. Only a resume's: a live event that comes late (out of order beyond
        # ``HOLD``) is still sent, late rather than never.
        self.resumed: dict[str, int] = {}
        self.arrivals: deque[float] = deque()
        self.outbox: deque[tuple[events.Header, str]] = deque()
        self.writer: asyncio.Task[None] | None = None
        self.closing: asyncio.Task[None] | None = None
        self.live = False  # ``ready`` sent, and not stopped

    def deliver(self, head: events.Header, text: str) -> None:
        """Queue an event for this socket's writer; a socket too far behind is closed.

        Not sent from here: a client that reads slowly (or not at all) fills its
        connection's buffers, and a send to it waits; sent in turn by the tenant's one
        subscription, every other socket of the tenant would wait with it (~20 s, until
        the ping timeout dropped the slow one)."""
        if self.closing is not None:
            return
        if len(self.outbox) >= OUTBOX:
            if self.writer is not None:
                self.writer.cancel()
            self.closing = asyncio.create_task(self._close_too_slow())
            return
        self.outbox.append((head, text))
        self._wake_writer()

    def start_writing(self) -> None:
        """Send the events queued since the socket joined (after ``ready``), then the rest."""
        self.live = True
        self._wake_writer()

    def _wake_writer(self) -> None:
        # A writer runs only while there is something to send: an idle socket keeps no
        # task (a few KB each, against the 50 KB an idle socket may cost).
        if self.live and self.writer is None and self.outbox:
            self.writer = asyncio.create_task(self._write())

    async def stop_writing(self) -> None:
        """End the writer; a close for falling behind is let finish (the server bounds it)."""
        self.live = False
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()
        for task in (self.writer, self.closing):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _write(self) -> None:
        try:
            while self.outbox:
                head, text = self.outbox.popleft()
                async with self.sending:
                    if head.type == events.CREATED and head.seq <= self.resumed.get(head.chat_id, 0):
                        continue  # a resume sent it already
                    await self.socket.send_text(text)
        except Exception:
            self.live = False  # the socket closed: its serve loop ends it
        finally:
            self.writer = None

    async def _close_too_slow(self) -> None:
        with contextlib.suppress(Exception):
            await self.socket.close(code=CLOSE_TOO_SLOW, reason="fell too far behind: resume")

    async def refusal(self) -> tuple[int, str] | None:
        """Why this socket may no longer be served (its token revoked by a logout or a
        password change, its user deleted, its read permission taken), as a close code and
        reason; None while it may, with its caller reloaded (``resume`` reads permissions).
        A database that cannot answer closes nothing: HTTP requests report it."""
        try:
            user = await self.token_auth.retrieve_user(self.token, self.socket)
        except NotAuthorizedException:
            return CLOSE_UNAUTHORIZED, "this token is no longer valid"
        except Exception as exc:
            logger.debug("rechecking a socket's caller failed: %s", exc)
            return None
        if user is None or not user.can(read(TOPIC)):
            return CLOSE_FORBIDDEN, "no longer allowed to read chats"
        self.user = user
        return None

    def over_rate(self) -> bool:
        now = time.monotonic()
        self.arrivals.append(now)
        while self.arrivals and now - self.arrivals[0] > 1.0:
            self.arrivals.popleft()
        return len(self.arrivals) > FRAMES_PER_SECOND

    async def resume(self, engine: Any, settings: Settings, chat_id: uuid.UUID, after: int) -> bool:
        """Send the room's messages after ``after``; False when the caller may not see it."""
        reads, _ = await ReadTransaction.begin(engine, self.tenant.schema, settings.db_statement_timeout_ms)
        try:
            row = await reads.fetch_one(ROOM_MEMBERS, {"chat_id": chat_id})
            if row is None or (self.user.id not in row[0] and not self.user.can(manage(TOPIC))):
                return False
            async with self.sending:
                rows = await reads.fetch_all(MESSAGES_AFTER, {"chat_id": chat_id, "after": after})
                fields = MessageRead.__struct_fields__
                for values in rows:
                    message = MessageRead(**dict(zip(fields, values, strict=True)))
                    kind = "message.deleted" if message.deleted else "message.created"
                    await self.socket.send_json(events.event(kind, chat_id, message.seq, message))
                    room = str(chat_id)
                    self.resumed[room] = max(self.resumed.get(room, 0), message.seq)
            return True
        finally:
            await reads.close()


class _Order:
    """One room's events in this process, let out in seq order: a ``message.created``
    when it is the next seq (or the first this process hears of), any other event once
    the message its seq names is out. An event that would go out of order is held until
    the ones before it arrive, or ``HOLD`` seconds have passed (``flush``)."""

    __slots__ = ("arrived", "expect", "held", "holds", "timer")

    def __init__(self) -> None:
        self.expect: int | None = None  # the next message.created seq
        self.held: list[tuple[int, int, int, events.Header, str]] = []
        self.arrived = 0
        self.timer: asyncio.TimerHandle | None = None
        self.holds = 0  # numbers each hold's flush marker

    def arrive(self, head: events.Header, text: str) -> list[tuple[events.Header, str]]:
        """What may go out now that ``head`` has arrived, in order."""
        self.arrived += 1
        # Same seq: the message before what names it (an edit, a marker).
        rank = 0 if head.type == events.CREATED else 1
        heapq.heappush(self.held, (head.seq, rank, self.arrived, head, text))
        return self._ready(force=False)

    def flush(self) -> list[tuple[events.Header, str]]:
        """Everything held, in order: what it waited for is not coming."""
        return self._ready(force=True)

    def _ready(self, force: bool) -> list[tuple[events.Header, str]]:
        out = []
        while self.held:
            seq, rank, _, head, text = self.held[0]
            expect = self.expect
            if not (force or expect is None or seq < expect or (rank == 0 and seq == expect)):
                break
            heapq.heappop(self.held)
            if rank == 0:
                self.expect = seq + 1 if expect is None else max(expect, seq + 1)
            out.append((head, text))
        return out


def forget_idle(rooms: dict[str, _Order]) -> None:
    """Drop the rooms that hold nothing: a long-lived subscription of a busy tenant would
    otherwise keep one entry for every room that ever had an event."""
    for room in [room for room, order in rooms.items() if not order.held and order.timer is None]:
        del rooms[room]


# Put in a subscriber's stream by a room's ``HOLD`` timer, so that its pump, which sends
# everything of its tenant in order, lets the room's held events out. Never the start of
# an event from the channel (``events.envelope`` starts with ``{``).
_FLUSH = b"\0flush "


class _Hub:
    """One app's sockets in this process, by tenant and user, and one subscription per
    tenant with sockets here: each event's header is decoded once, and its frame sent as
    published to the sockets of its members only (not tested against every socket of the
    tenant), in each room's seq order (``_Order``)."""

    def __init__(self, channels: ChannelsPlugin) -> None:
        self.channels = channels
        self.users: dict[uuid.UUID, defaultdict[str, set[_Socket]]] = {}
        self.pumps: dict[uuid.UUID, tuple[Any, asyncio.Task[None]]] = {}

    async def join(self, state: _Socket) -> None:
        tenant = state.tenant.id
        if tenant not in self.users:
            self.users[tenant] = defaultdict(set)
            subscriber = await self.channels.subscribe([tenant_channel(tenant, TOPIC)])
            self.pumps[tenant] = (subscriber, asyncio.create_task(self._pump(tenant, subscriber)))
        self.users[tenant][state.me].add(state)

    async def leave(self, state: _Socket) -> None:
        tenant = state.tenant.id
        users = self.users.get(tenant)
        if users is None:
            return
        users[state.me].discard(state)
        if not users[state.me]:
            del users[state.me]
        if not users:
            del self.users[tenant]
            subscriber, task = self.pumps.pop(tenant)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await self.channels.unsubscribe(subscriber)

    async def _pump(self, tenant: uuid.UUID, subscriber: Any) -> None:
        rooms: dict[str, _Order] = {}
        loop = asyncio.get_running_loop()
        try:
            async for raw in subscriber.iter_events():
                if raw.startswith(_FLUSH):
                    room, _, hold = raw[len(_FLUSH) :].decode().partition(" ")
                    order = rooms.get(room)
                    if order is None or order.timer is None or hold != str(order.holds):
                        continue  # the marker of a hold that ended before it came
                    order.timer = None
                    ready = order.flush()
                else:
                    try:
                        head, text = events.open_envelope(raw)
                    except (ValueError, msgspec.DecodeError):
                        continue
                    room = head.chat_id
                    order = rooms.get(room)
                    if order is None:
                        order = rooms[room] = _Order()
                    ready = order.arrive(head, text)
                if order.held and order.timer is None:
                    order.holds += 1
                    marker = _FLUSH + f"{room} {order.holds}".encode()
                    order.timer = loop.call_later(HOLD, subscriber.put_nowait, marker)
                elif not order.held and order.timer is not None:
                    order.timer.cancel()
                    order.timer = None
                for head, text in ready:
                    self._send(tenant, head, text)
                if len(rooms) > ROOMS_REMEMBERED:
                    forget_idle(rooms)
        finally:
            for order in rooms.values():
                if order.timer is not None:
                    order.timer.cancel()

    def _send(self, tenant: uuid.UUID, head: events.Header, text: str) -> None:
        users = self.users.get(tenant, {})
        for member in head.members:
            for state in users.get(member, ()):
                state.deliver(head, text)


# One hub per app (its channels plugin), made with the app's first socket.
_hubs: weakref.WeakKeyDictionary[ChannelsPlugin, _Hub] = weakref.WeakKeyDictionary()


def _hub(channels: ChannelsPlugin) -> _Hub:
    hub = _hubs.get(channels)
    if hub is None:
        hub = _hubs[channels] = _Hub(channels)
    return hub


# Sockets per (tenant, user) in this process.
_open: defaultdict[tuple[uuid.UUID, uuid.UUID], int] = defaultdict(int)
# This process's sockets by tenant, for closing them when their tenant goes away.
_by_tenant: defaultdict[uuid.UUID, set[_Socket]] = defaultdict(set)
_watching: set[int] = set()
_rechecks: set[asyncio.Task[None]] = set()


def _watch_tenants(resolver: Any) -> None:
    """Once per resolver: on every tenant change it hears of, look the changed tenants'
    sockets' hosts up again and close the sockets of a tenant no longer served."""
    if id(resolver) in _watching:
        return
    _watching.add(id(resolver))

    def changed(tenant_id: str) -> None:
        for tenant, states in list(_by_tenant.items()):
            if tenant_id in (ALL_TENANTS, str(tenant)) and states:
                task = asyncio.get_running_loop().create_task(_recheck(resolver, set(states)))
                _rechecks.add(task)
                task.add_done_callback(_rechecks.discard)

    resolver.add_listener(changed)


async def _recheck(resolver: Any, states: set[_Socket]) -> None:
    """Each socket's tenant, then its caller: a tenant change is also how every process
    hears that a tenant's users, roles or links changed, or that a token was revoked
    (caller_cache.py), so a socket outlives neither its tenant nor its token. One
    statement per socket, one socket at a time: changes to users are rare."""
    for state in states:
        tenant = await resolver.resolve(state.host)
        if tenant is None or tenant.deleting or tenant.suspended:
            refusal: tuple[int, str] | None = (CLOSE_TENANT_GONE, "this tenant is not served")
        else:
            refusal = await state.refusal()
        if refusal is not None:
            with contextlib.suppress(Exception):
                await state.socket.close(code=refusal[0], reason=refusal[1])


def _host(socket: WebSocket[Any, Any, Any]) -> str:
    parsed = normalize_host(socket.headers.get("host"))
    return parsed[0] if parsed else ""


async def _token_of(socket: WebSocket[Any, Any, Any]) -> str | None:
    """The bearer token: the subprotocol pair ``bearer, <token>``, else the first frame."""
    offered = socket.scope.get("subprotocols") or []
    if len(offered) >= 2 and offered[0].lower() == "bearer":
        await socket.accept(subprotocols="bearer")
        return str(offered[1])
    await socket.accept()
    try:
        async with asyncio.timeout(AUTH_WINDOW):
            text = await socket.receive_text()
    except (TimeoutError, WebSocketDisconnect):
        return None
    if len(text) > FRAME_MAX:
        return None
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "auth" or not isinstance(frame.get("token"), str):
        return None
    return str(frame["token"])


async def _caller(
    token_auth: TokenAuth, socket: WebSocket[Any, Any, Any], encoded: str
) -> tuple[AuthUser, Token] | None:
    jwt = token_auth.jwt
    try:
        token = jwt.token_cls.decode(
            encoded_token=encoded,
            secret=jwt.token_secret,
            algorithm=jwt.algorithm,
            require_claims=jwt.require_claims,
        )
        user = await token_auth.retrieve_user(token, socket)
    except Exception:
        # Malformed, expired, revoked, another tenant's: one answer for all, as over HTTP.
        return None
    return (user, token) if user is not None and user.can(read(TOPIC)) else None


def _resume_request(frame: Any) -> tuple[uuid.UUID, int] | None:
    if not isinstance(frame, dict) or frame.get("type") != "resume":
        return None
    after = frame.get("after", 0)
    try:
        chat_id = uuid.UUID(str(frame.get("chat_id")))
    except ValueError:
        return None
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        return None
    return chat_id, after


@websocket(
    "/ws",
    opt={"exclude_from_auth": True},
    # Authenticated by the handler itself: a browser cannot set an Authorization header.
)
async def chat_socket(
    socket: WebSocket[Any, Any, Any],
    tenant: NamedDependency[ResolvedTenant],
    settings: NamedDependency[Settings],
    token_auth: NamedDependency[TokenAuth],
    db_engine: NamedDependency[AsyncEngine],
) -> None:
    encoded = await _token_of(socket)
    caller = None if encoded is None else await _caller(token_auth, socket, encoded)
    if caller is None:
        await socket.close(code=CLOSE_UNAUTHORIZED, reason="a valid bearer token of this tenant is needed")
        return
    user, token = caller
    key = (tenant.id, user.id)
    if _open[key] >= SOCKETS_PER_USER:
        await socket.close(code=CLOSE_TOO_MANY, reason="too many sockets for this user")
        return
    _open[key] += 1
    state = _Socket(socket, user, tenant, token, token_auth)
    _by_tenant[tenant.id].add(state)
    _watch_tenants(socket.app.plugins.get(TenancyPlugin).resolver)
    try:
        await _serve(socket, state, settings, db_engine)
    finally:
        _open[key] -= 1
        if not _open[key]:
            del _open[key]
        _by_tenant[tenant.id].discard(state)
        if not _by_tenant[tenant.id]:
            del _by_tenant[tenant.id]


async def _serve(
    socket: WebSocket[Any, Any, Any], state: _Socket, settings: Settings, engine: AsyncEngine
) -> None:
    hub = _hub(socket.app.plugins.get(ChannelsPlugin))
    await hub.join(state)
    try:
        await socket.send_json({"type": "ready"})
        state.start_writing()
        while True:
            try:
                text = await socket.receive_text()
            except WebSocketDisconnect:
                return
            if len(text.encode()) > FRAME_MAX:
                await socket.close(code=CLOSE_TOO_BIG, reason="frames are at most 64 KiB")
                return
            if state.over_rate():
                await socket.close(code=CLOSE_POLICY, reason="at most 20 frames a second")
                return
            try:
                frame = json.loads(text)
            except ValueError:
                frame = None
            if isinstance(frame, dict) and frame.get("type") == "ping":
                async with state.sending:
                    await socket.send_json({"type": "pong"})
                continue
            wanted = _resume_request(frame)
            if wanted is None:
                async with state.sending:
                    await socket.send_json({"type": "error", "detail": "expected a resume or a ping"})
                continue
            if not await state.resume(engine, settings, *wanted):
                await socket.close(code=CLOSE_FORBIDDEN, reason="no such room")
                return
    finally:
        await hub.leave(state)
        await state.stop_writing()
