"""A query string sent to a route that reads none is refused (API.md §5: an unknown query
parameter is 422 naming it).

Routes that take query parameters (the lists, occurrences, a room's messages, a user's
deletion) name their own unknown and bad ones, all in one 422 with the bad values
(``listing.query_problems``). Every other route read none and ignored what it was sent,
so a client's ``GET /users/{id}?fields=name`` looked honoured. Which routes take none is
read once from the OpenAPI document, where every route's parameters are declared, when
the app is made (``openapi.finish_openapi`` calls ``mark_routes_reading_no_query``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Request
from litestar.handlers.base import BaseRouteHandler

from atrium.platform.web.errors import problem
from atrium.platform.web.listing import query_problems

# Route option, set when the app is made: the route declares no query parameter. A route
# without it (one registered later, Litestar's own) is not this check's to judge.
READS_NO_QUERY = "reads_no_query"
# Route option: the route ignores any query string (a monitor's cache-busting ``?t=…`` on
# the health check must not look like an outage).
IGNORES_QUERY = "ignores_query"
# Query parameters a handler requires but declares optional to Litestar, so that it names
# every missing one in one 422 itself: the document says they are required (openapi.py).
REQUIRED_QUERY = "required_query"


def mark_routes_reading_no_query(handlers: Iterable[tuple[BaseRouteHandler, bool]]) -> None:
    """``(handler, declares query parameters)`` for every documented operation."""
    for handler, declares in handlers:
        if not declares and not handler.opt.get(IGNORES_QUERY):
            handler.opt[READS_NO_QUERY] = True


def refuse_unread_query(request: Request[Any, Any, Any]) -> None:
    """422 naming every query parameter sent to a route that reads none."""
    if request.scope.get("query_string") and request.route_handler.opt.get(READS_NO_QUERY):
        raise problem(
            422, "The request is not valid.", errors=query_problems(request.query_params, (), "this route")
        )
