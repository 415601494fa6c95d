"""/chats: rooms through the shared conventions, their messages and read markers beside them.

Like ``atrium.platform.web.resources``, this module does not use ``from __future__ import
annotations``: the handlers are built at runtime and Litestar reads their annotations.
"""

import uuid
from typing import Any

from litestar import Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.enums import ParamType
from litestar.openapi.spec import OpenAPIType, Parameter, Schema
from litestar.params import FromPath, JSONBody

from atrium.platform.security.guards import requires
from atrium.platform.security.permissions import read, write
from atrium.platform.web.bodies import JSON_BODY_LIMIT
from atrium.platform.web.concurrency import CHECKS_IF_MATCH, SENDS_ETAG, request_header, row_tag
from atrium.platform.web.errors import problem, problem_responses
from atrium.platform.web.idempotency import answer_once
from atrium.platform.web.listing import LIST_PARAMETERS, Filter, query_problems
from atrium.platform.web.resources import ResourceSpec
from atrium.tenants.chats import schemas as s
from atrium.tenants.chats.live import chat_socket
from atrium.tenants.chats.services import UNREAD_COUNT, ChatService, message_tag, render_message

RESOURCE = "chats"
LIMIT_DEFAULT, LIMIT_MAX = 50, 200
SEQ_MAX = 2**31 - 1


def _query_int(request: Request, name: str, low: int, high: int, errors: list[dict[str, str]]) -> int | None:
    values = request.query_params.getall(name, [])
    if not values:
        return None
    if len(values) > 1:
        errors.append({"field": name, "message": "given more than once", "source": "query"})
        return None
    try:
        value = int(values[0])
    except ValueError:
        errors.append({"field": name, "message": "not an integer", "source": "query"})
        return None
    if not low <= value <= high:
        errors.append({"field": name, "message": f"must be between {low} and {high}", "source": "query"})
        return None
    return value


def _page_parameters(request: Request) -> tuple[int | None, int | None, int]:
    """``before``, ``after`` and ``limit``; every bad or unknown one named in one 422."""
    errors = query_problems(request.query_params, ("before", "after", "limit"))
    before = _query_int(request, "before", 0, SEQ_MAX, errors)
    after = _query_int(request, "after", 0, SEQ_MAX, errors)
    limit = _query_int(request, "limit", 1, LIMIT_MAX, errors)
    if errors:
        raise problem(422, "The list parameters are not valid.", errors=errors)
    return before, after, LIMIT_DEFAULT if limit is None else limit


def _query_parameter(name: str, low: int, high: int, description: str) -> Parameter:
    schema = Schema(type=OpenAPIType.INTEGER, minimum=low, maximum=high)
    return Parameter(
        name=name, param_in=ParamType.QUERY, required=False, description=description, schema=schema
    )


# Read by ``_page_parameters`` itself (every bad one named in one 422); declared for the document.
_PAGE_PARAMETERS = [
    _query_parameter("before", 0, SEQ_MAX, "Messages with a lower seq, newest first."),
    _query_parameter("after", 0, SEQ_MAX, "The messages right after this seq, oldest first."),
    _query_parameter("limit", 1, LIMIT_MAX, f"How many, default {LIMIT_DEFAULT}."),
]


def message_handlers() -> list[Any]:
    crud_dependency = ChatService.dependency()

    @get(
        "/{item_id:uuid}/messages",
        guards=[requires(read(RESOURCE))],
        dependencies=crud_dependency,
        operation_id="list_chat_messages",
        summary="List a room's messages",
        description=(
            "Newest first, `before` a seq when given; with `after`, the `limit` messages right "
            "after that seq, oldest first. `limit` 1 to 200, default 50."
        ),
        opt={LIST_PARAMETERS: _PAGE_PARAMETERS},
        responses=problem_responses(401, 403, 404, 422, 503),
    )
    async def list_messages(
        crud: NamedDependency[ChatService],
        request: Request,
        item_id: FromPath[uuid.UUID],
    ) -> s.MessagePage:
        before, after, limit = _page_parameters(request)
        found = await crud.messages(item_id, before, after, limit)
        return s.MessagePage(items=[render_message(m) for m in found], limit=limit)

    @post(
        "/{item_id:uuid}/messages",
        guards=[requires(write(RESOURCE))],
        dependencies=crud_dependency,
        operation_id="create_chat_message",
        summary="Post a message to a room",
        description=(
            "`body` 1 to 4,000 characters; `parent_id`: a top-level message of the room (a reply to a "
            "reply is 422). Answered once per `Idempotency-Key`."
        ),
        status_code=201,
        request_max_body_size=JSON_BODY_LIMIT,
        opt={SENDS_ETAG: True},
        responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
    )
    async def create_message(
        crud: NamedDependency[ChatService],
        request: Request,
        item_id: FromPath[uuid.UUID],
        data: JSONBody[s.MessageCreate],
    ) -> Response[s.MessageRead]:
        return await answer_once(
            request,
            crud.session,
            crud.tenant,
            lambda before_commit: crud.post(item_id, data, before_commit),
            render_message,
            lambda message: {
                "Location": f"/{RESOURCE}/{item_id}/messages/{message.id}",
                "ETag": message_tag(message),
            },
        )

    @get(
        "/{item_id:uuid}/messages/{message_id:uuid}",
        guards=[requires(read(RESOURCE))],
        dependencies=crud_dependency,
        operation_id="get_chat_message",
        summary="Get one message of a room",
        description="A room the caller is not a member of (without `chats:manage`): 404.",
        opt={SENDS_ETAG: True},
        responses=problem_responses(401, 403, 404, 503),
    )
    async def get_message(
        crud: NamedDependency[ChatService],
        item_id: FromPath[uuid.UUID],
        message_id: FromPath[uuid.UUID],
    ) -> Response[s.MessageRead]:
        message = await crud.message(item_id, message_id)
        return Response(render_message(message), headers={"ETag": message_tag(message)})

    @patch(
        "/{item_id:uuid}/messages/{message_id:uuid}",
        guards=[requires(write(RESOURCE))],
        dependencies=crud_dependency,
        operation_id="update_chat_message",
        summary="Edit a message",
        description="The author, or `chats:manage`. Sets `edited_at`; a deleted message: 409.",
        request_max_body_size=JSON_BODY_LIMIT,
        opt={SENDS_ETAG: True, CHECKS_IF_MATCH: True},
        responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 415, 422, 503),
    )
    async def update_message(
        crud: NamedDependency[ChatService],
        request: Request,
        item_id: FromPath[uuid.UUID],
        message_id: FromPath[uuid.UUID],
        data: JSONBody[s.MessageUpdate],
    ) -> Response[s.MessageRead]:
        if_match = request_header(request.scope, b"if-match")
        message = await crud.edit(item_id, message_id, data, if_match)
        return Response(render_message(message), headers={"ETag": message_tag(message)})

    @delete(
        "/{item_id:uuid}/messages/{message_id:uuid}",
        guards=[requires(write(RESOURCE))],
        dependencies=crud_dependency,
        operation_id="delete_chat_message",
        summary="Delete a message",
        description="The author, or `chats:manage`. The message keeps its seq, with an empty body.",
        status_code=204,
        opt={CHECKS_IF_MATCH: True},
        responses=problem_responses(401, 403, 404, 412, 503),
    )
    async def delete_message(
        crud: NamedDependency[ChatService],
        request: Request,
        item_id: FromPath[uuid.UUID],
        message_id: FromPath[uuid.UUID],
    ) -> None:
        if_match = request_header(request.scope, b"if-match")
        await crud.remove(item_id, message_id, if_match)

    @post(
        "/{item_id:uuid}/read",
        guards=[requires(read(RESOURCE))],
        dependencies=crud_dependency,
        operation_id="read_chat",
        summary="Move the caller's read marker",
        description="Forward only: a `seq` below the marker changes nothing. Answers the room.",
        status_code=200,
        request_max_body_size=JSON_BODY_LIMIT,
        opt={SENDS_ETAG: True},
        responses=problem_responses(400, 401, 403, 404, 413, 415, 422, 503),
    )
    async def mark_read(
        crud: NamedDependency[ChatService],
        request: Request,
        item_id: FromPath[uuid.UUID],
        data: JSONBody[s.ReadMarker],
    ) -> Response[s.ChatRead]:
        return await answer_once(
            request,
            crud.session,
            crud.tenant,
            lambda before_commit: crud.mark_read(item_id, data.seq, before_commit),
            CHATS.render,
            lambda room: {"ETag": row_tag(room)},
            status=200,
        )

    return [
        list_messages,
        create_message,
        get_message,
        update_message,
        delete_message,
        mark_read,
        chat_socket,
    ]


CHATS = ResourceSpec(
    RESOURCE,
    ChatService,
    s.ChatRead,
    s.ChatCreate,
    s.ChatUpdate,
    extra_handlers=message_handlers(),
    description=(
        "Chat rooms (`group`, `direct`) seen by their members and `chats:manage`, their "
        "messages (per-room `seq`, threads one level deep) and each member's read marker. "
        "Live events: the websocket at `/chats/ws`."
    ),
    member="write",
    filters=[Filter("kind"), Filter("owner_id")],
    sort=["updated_at", "last_message_at", "name"],
    caller_fields={"unread_count": UNREAD_COUNT},
)
