"""A query string sent to a route that reads none is refused (API.md §5: an unknown query
parameter is 422 naming it).

Routes that take query parameters (the lists, occurrences, a room's messages, a user's
deletion) name their own unknown and bad ones, all in one 422 with the bad values
(``listing.query_problems``). Every other route read none and ignored what it was sent,
so a client's ``GET /users/{id}?fields=name`` looked honoured. Which routes take none is
read from the OpenAPI document, where every route's parameters are declared.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.handlers.base import BaseRouteHandler

from atrium.platform.web.errors import problem
from atrium.platform.web.listing import query_problems
from atrium.platform.web.openapi import document_path

# Per handler: whether it reads a query string (Litestar hands ``before_request`` hooks the
# same handler every time).
_READS_QUERY: dict[tuple[BaseRouteHandler, str], bool] = {}


# Route option: the route ignores any query string (a monitor's cache-busting ``?t=…`` on
# the health check must not look like an outage).
IGNORES_QUERY = "ignores_query"


def _reads_query(request: Request[Any, Any, Any]) -> bool:
    """Whether the route declares query parameters; ``True`` for one the document does not
    describe (Litestar's own, the catch-all), which is not this check's to judge."""
    if request.route_handler.opt.get(IGNORES_QUERY):
        return True
    path = document_path(request.scope.get("path_template", ""))
    item = (request.app.openapi_schema.paths or {}).get(path)
    operation = getattr(item, request.method.lower(), None) if item is not None else None
    if operation is None:
        return True
    return any(getattr(p, "param_in", None) == "query" for p in operation.parameters or ())


def refuse_unread_query(request: Request[Any, Any, Any]) -> None:
    """422 naming every query parameter sent to a route that reads none."""
    if not request.scope.get("query_string"):
        return
    key = (request.route_handler, request.method)
    reads = _READS_QUERY.get(key)
    if reads is None:
        reads = _READS_QUERY[key] = _reads_query(request)
    if not reads:
        raise problem(
            422, "The request is not valid.", errors=query_problems(request.query_params, (), "this route")
        )
