"""/help-desk: tickets with a status workflow, and their public and internal replies (API.md §10).

Visibility: a ticket is seen by its requester, its assignee and help-desk:manage holders
(``TicketService.visibility``), in lists, gets, changes and replies alike. Internal replies
are kept from everyone without manage by the replies list's own rule, applied before the
page, the count and the search are made, so none of them can reveal one.

Like ``atrium.platform.web.resources``, this module does not use ``from __future__ import
annotations``: the handlers are built at runtime and Litestar reads their annotations.
"""

import uuid
from collections.abc import Collection
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.plugins.problem_details import ProblemDetailsException
from sqlalchemy import ColumnElement, Text, bindparam, literal, literal_column, or_, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import psycopg

from atrium.platform.db.read_transaction import READS_ON_DRIVER, ReadTransaction
from atrium.platform.security.guards import requires
from atrium.platform.security.permissions import WILDCARD, manage, read, write
from atrium.platform.web.bodies import JSON_BODY_LIMIT, refuse_nul_characters
from atrium.platform.web.concurrency import SENDS_ETAG, next_updated_at, row_tag
from atrium.platform.web.errors import LIST_PROBLEMS, problem, problem_responses
from atrium.platform.web.idempotency import BeforeCommit, answer_once
from atrium.platform.web.listing import LIST_PARAMETERS, Filter, Listing, Sort
from atrium.platform.web.pagination import PAGE_DEPENDENCY, PageParams
from atrium.platform.web.resources import ResourceSpec, read_page
from atrium.platform.web.services import CrudService, not_found
from atrium.tenants.base import utcnow
from atrium.tenants.helpdesk.models import STATUSES, Ticket, TicketReply
from atrium.tenants.helpdesk.schemas import (
    ReplyCreate,
    ReplyPage,
    ReplyRead,
    TicketCreate,
    TicketRead,
    TicketUpdate,
    ticket_rules,
)
from atrium.tenants.identity.models import UserMeta, UserRole

RESOURCE = "help-desk"
# Any status but closed may move to these; only solved may close.
WORKING = frozenset({"open", "pending", "on_hold", "solved"})
# What a requester without manage may change.
REQUESTER_FIELDS = frozenset({"subject", "body", "status"})


def _field_errors(errors: list[dict[str, str]]) -> None:
    if errors:
        raise problem(422, "The ticket is not valid.", errors=errors)


def _as_sent(refused: ProblemDetailsException, data: Any) -> ProblemDetailsException:
    """``refused`` naming ``requester_id`` where it names ``owner_id``, when the body sent the
    requester under that name (and no ``owner_id``): a client reads its own field back."""
    unset = (None, msgspec.UNSET)
    errors = refused.extra.get("errors") if isinstance(refused.extra, dict) else None
    as_requester = getattr(data, "requester_id", None) not in unset and data.owner_id in unset
    if not as_requester or not isinstance(errors, list) or all(e.get("field") != "owner_id" for e in errors):
        return refused
    renamed = [{**e, "field": "requester_id"} if e.get("field") == "owner_id" else e for e in errors]
    detail = (refused.detail or "").replace("owner_id", "requester_id")
    return problem(refused.status_code, detail, type_=refused.type_, **{**refused.extra, "errors": renamed})


class TicketService(CrudService[Ticket]):
    model = Ticket
    transitions = {s: WORKING | ({"closed"} if s == "solved" else set()) for s in STATUSES if s != "closed"}

    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return or_(Ticket.owner_id == caller, Ticket.assignee_id == caller)

    # -- requester_id is owner_id under the name API.md §10 gives it --------------------

    @staticmethod
    def _as_owner(data: Any) -> Any:
        """``data`` with a ``requester_id`` given as the ``owner_id``; one that differs from a
        given ``owner_id`` is left for ``ticket_rules`` to name."""
        requester = getattr(data, "requester_id", None)
        if requester in (None, msgspec.UNSET) or data.owner_id not in (None, msgspec.UNSET, requester):
            return data
        return msgspec.structs.replace(data, owner_id=requester, requester_id=msgspec.UNSET)

    async def create(self, data: msgspec.Struct, before_commit: BeforeCommit[Ticket] | None = None) -> Ticket:
        try:
            return await super().create(self._as_owner(data), before_commit)
        except ProblemDetailsException as refused:
            raise _as_sent(refused, data) from None

    async def update(self, item_id: uuid.UUID, data: msgspec.Struct, if_match: str | None = None) -> Ticket:
        try:
            return await super().update(item_id, self._as_owner(data), if_match)
        except ProblemDetailsException as refused:
            raise _as_sent(refused, data) from None

    # -- the rules --------------------------------------------------------------------

    async def _holds_manage(self, user_id: uuid.UUID) -> bool:
        """Whether ``user_id`` holds help-desk:manage through any of their roles."""
        strong = [WILDCARD, manage(RESOURCE)]
        found = await self.session.scalar(
            select(literal(True))
            .select_from(UserMeta)
            .join(UserRole, UserRole.id == UserMeta.user_roles)
            .where(
                UserMeta.owner_id == user_id,
                UserRole.permissions.op("&&")(literal(strong, type_=postgresql.ARRAY(Text))),
            )
            .limit(1)
        )
        return bool(found)

    async def _check_references(self, values: dict[str, Any], errors: list[dict[str, str]]) -> None:
        assignee = values.get("assignee_id")
        if assignee is not None and not await self._holds_manage(assignee):
            errors.append({"field": "assignee_id", "message": f"must be a user holding {manage(RESOURCE)}"})
        followed = values.get("follow_up_of")
        if followed is not None:
            statement = select(Ticket.status).where(Ticket.id == followed)
            if (visible := self.visible_to_caller()) is not None:
                statement = statement.where(visible)
            status = await self.session.scalar(statement)
            if status != "closed":
                message = "no such ticket" if status is None else f"that ticket is {status}, not closed"
                errors.append({"field": "follow_up_of", "message": message})

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        if values.get("assignee_id") is not None and not self.may_manage():
            raise self._refuse_beyond_ownership("Only an agent can assign a ticket.")
        if values["status"] != "new" and not self.may_manage():
            raise self._refuse_beyond_ownership(f"Only an agent can file a ticket as {values['status']}.")
        # What a requester may not change afterwards they may not set when filing either:
        # an agent triages (priority and tags are the agents' queue, not the requester's).
        triaged = [name for name, unset in (("priority", "normal"), ("tags", [])) if values[name] != unset]
        if triaged and not self.may_manage():
            raise self._refuse_beyond_ownership(f"Only an agent can set {' and '.join(triaged)}.")
        errors = ticket_rules(values)
        values.pop("requester_id", None)
        await self._check_references(values, errors)
        if values["status"] == "solved":
            values["solved_at"] = utcnow()
        _field_errors(errors)
        return values

    def check_state(self, item: Ticket, allowed: Collection[str], doing: str) -> None:
        if item.status == "closed":  # whatever was asked: the one way on is a follow-up
            raise problem(
                409,
                "This ticket is closed and never changes again: file a new ticket with "
                "follow_up_of set to this one.",
                type_="invalid-state",
                state="closed",
            )
        super().check_state(item, allowed, doing)

    async def prepare_update(self, item: Ticket, changes: dict[str, Any]) -> dict[str, Any]:
        # A closed ticket never changes: its follow-up is a new ticket.
        self.check_state(item, self.transitions or {}, "a change")
        target = changes.get("status", item.status)
        # The stored assignee stands for one the change leaves out.
        checked = {**changes, "status": target, "assignee_id": changes.get("assignee_id", item.assignee_id)}
        errors = ticket_rules(checked)
        changes.pop("requester_id", None)
        if not self.may_manage():
            # Sending a field's current value changes nothing, and is allowed.
            beyond = sorted(k for k in set(changes) - REQUESTER_FIELDS if changes[k] != getattr(item, k))
            if beyond:
                raise self._refuse_beyond_ownership(f"A requester may not change {', '.join(beyond)}.")
            if target not in {item.status, "solved"}:
                raise self._refuse_beyond_ownership("A requester may only solve their ticket.")
        if "tags" in changes:
            changes["tags"] = checked["tags"]
        await self._check_references(changes, errors)
        _field_errors(errors)
        if target != item.status:
            now = utcnow()
            if target == "solved":
                changes["solved_at"] = now
            elif target == "closed":
                changes["closed_at"] = now
            else:
                changes["solved_at"] = None
        return changes

    async def before_delete(self, item: Ticket) -> None:
        self.check_state(item, self.transitions or {}, "deleting it")

    # -- replies ----------------------------------------------------------------------

    async def reply(
        self, ticket_id: uuid.UUID, data: ReplyCreate, before_commit: BeforeCommit[TicketReply] | None
    ) -> TicketReply:
        refuse_nul_characters({"body": data.body})
        ticket = await self.get(ticket_id, lock=True)
        if data.visibility == "internal" and not self.may_manage():
            raise self._refuse_beyond_ownership("Only agents write internal replies.")
        self.check_state(ticket, self.transitions or {}, "a reply")
        reply = TicketReply(
            id=uuid.uuid4(),
            ticket_id=ticket.id,
            owner_id=self.user.id,
            body=data.body,
            visibility=data.visibility,
        )
        if data.visibility == "public":
            # A requester's answer puts the ticket back in the agents' queue.
            if ticket.owner_id == self.user.id and ticket.status in {"pending", "solved"}:
                ticket.status, ticket.solved_at = "open", None
            # Only public replies move the ticket's version: an internal note must not
            # show the requester that something happened.
            ticket.updated_at = next_updated_at(ticket.updated_at)

        async def adding() -> None:
            self.session.add(reply)
            await self.session.flush()
            if before_commit is not None:
                await before_commit(reply)

        await self._write(adding)
        return reply

    async def one_reply(self, ticket_id: uuid.UUID, reply_id: uuid.UUID) -> TicketReply:
        """A reply of a ticket the caller may see; an internal one to ``manage`` only (404 otherwise)."""
        await self.get(ticket_id)
        reply = await self.session.scalar(
            select(TicketReply).where(TicketReply.id == reply_id, TicketReply.ticket_id == ticket_id)
        )
        if reply is None or (reply.visibility == "internal" and not self.may_manage()):
            raise not_found(TicketReply)
        return reply


def render_reply(reply: TicketReply) -> ReplyRead:
    return msgspec.convert(reply, ReplyRead, from_attributes=True)


def _reply_listing() -> Listing:
    return Listing(
        TicketReply.__table__,
        tuple(ReplyRead.__struct_fields__),
        visibility=TicketReply.visibility == literal_column("'public'"),
        within=TicketReply.ticket_id == bindparam("ticket_id", type_=TicketReply.ticket_id.type),
    )


REPLIES = _reply_listing()


def _visible_ticket_sql() -> tuple[str, str]:
    """Whether a ticket exists, for any caller (manage) and for the caller's own eyes."""
    exists = select(literal_column("1")).select_from(Ticket).where(Ticket.id == bindparam("ticket_id"))
    rule = TicketService.visibility(bindparam("caller_id", type_=Ticket.id.type))
    dialect = psycopg.dialect()
    return str(exists.compile(dialect=dialect)), str(exists.where(rule).compile(dialect=dialect))


ANY_TICKET, OWN_TICKET = _visible_ticket_sql()


def reply_handlers() -> list[Any]:
    crud_dependency = TicketService.dependency()

    @get(
        "/{item_id:uuid}/replies",
        guards=[requires(read(RESOURCE))],
        operation_id="list_help_desk_replies",
        summary="List a ticket's replies",
        description=(
            "Newest first. Internal replies are listed, counted and searched for help-desk:manage only."
        ),
        dependencies=PAGE_DEPENDENCY,
        opt={
            READS_ON_DRIVER: True,
            LIST_PARAMETERS: REPLIES.openapi_parameters(),
            LIST_PROBLEMS: REPLIES.problems_of,
        },
        responses=problem_responses(401, 403, 404, 422, 503),
    )
    async def list_replies(
        request: Request,
        reads: NamedDependency[ReadTransaction],
        page: NamedDependency[PageParams],
        item_id: FromPath[uuid.UUID],
    ) -> ReplyPage:
        user = request.user
        agent = user.can(manage(RESOURCE))
        wanted = REPLIES.parse(request.query_params, visible_only=not agent)
        found = await reads.fetch_one(
            ANY_TICKET if agent else OWN_TICKET, {"ticket_id": item_id, "caller_id": user.id}
        )
        if found is None:
            await reads.close()
            raise not_found(Ticket)
        rows, total = await read_page(
            reads, REPLIES.statement(wanted), {**wanted.values(), "ticket_id": item_id}, page
        )
        await reads.close()
        fields = REPLIES.fields
        items = [ReplyRead(**dict(zip(fields, row, strict=False))) for row in rows]
        return ReplyPage(items=items, total=total, limit=page.limit, offset=page.offset)

    @post(
        "/{item_id:uuid}/replies",
        guards=[requires(write(RESOURCE))],
        operation_id="create_help_desk_reply",
        dependencies=crud_dependency,
        summary="Reply to a ticket",
        description=(
            "`visibility` is required; `internal` needs help-desk:manage. A public reply by the "
            "requester moves a pending or solved ticket back to open. A closed ticket: 409."
        ),
        status_code=201,
        request_max_body_size=JSON_BODY_LIMIT,
        opt={SENDS_ETAG: True},
        responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
    )
    async def create_reply(
        crud: NamedDependency[TicketService],
        request: Request,
        item_id: FromPath[uuid.UUID],
        data: JSONBody[ReplyCreate],
    ) -> Response[ReplyRead]:
        return await answer_once(
            request,
            crud.session,
            crud.tenant,
            lambda before_commit: crud.reply(item_id, data, before_commit),
            render_reply,
            lambda reply: {"Location": f"/{RESOURCE}/{item_id}/replies/{reply.id}", "ETag": row_tag(reply)},
        )

    @get(
        "/{item_id:uuid}/replies/{reply_id:uuid}",
        guards=[requires(read(RESOURCE))],
        operation_id="get_help_desk_reply",
        dependencies=crud_dependency,
        summary="Get one reply of a ticket",
        description="An internal reply is seen by help-desk:manage holders only (404 for others).",
        opt={SENDS_ETAG: True},
        responses=problem_responses(401, 403, 404, 503),
    )
    async def get_reply(
        crud: NamedDependency[TicketService], item_id: FromPath[uuid.UUID], reply_id: FromPath[uuid.UUID]
    ) -> Response[ReplyRead]:
        reply = await crud.one_reply(item_id, reply_id)
        return Response(render_reply(reply), headers={"ETag": row_tag(reply)})

    return [list_replies, create_reply, get_reply]


HELP_DESK = ResourceSpec(
    RESOURCE,
    TicketService,
    TicketRead,
    TicketCreate,
    TicketUpdate,
    extra_handlers=reply_handlers(),
    description="Help-desk tickets: a status workflow, public and internal replies.",
    item_name="help_desk_ticket",
    member="write",
    filters=[
        Filter("status"),
        Filter("priority"),
        Filter("assignee_id"),
        # The owner under its other name: owner_id is indexed.
        Filter("requester_id", column="owner_id"),
        Filter("tag", casefold=True, column="tags", element=True),
    ],
    sort=["updated_at", Sort("priority", "priority_rank"), "created_at"],
)
