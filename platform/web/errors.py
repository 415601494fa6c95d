"""Every error a client can cause, as an RFC 9457 problem document.

Built on ``litestar.plugins.problem_details``: handlers and middleware raise
``problem(...)``; Litestar's own HTTP exceptions, validation failures and database
outages are converted here. Nothing a client sees carries a stack trace, SQL or a
schema name: unexpected errors are logged and answered with a bare 500.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
import psycopg
import psycopg.errors
from advanced_alchemy.exceptions import NotFoundError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from atrium.platform.web.validation import body_problems, readable

logger = logging.getLogger("atrium.errors")

_TYPES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-requests",
    500: "internal-error",
    503: "service-unavailable",
}


class FieldError(msgspec.Struct):
    field: str
    message: str
    source: (
        Annotated[
            str,
            msgspec.Meta(
                description=(
                    "Where the field is: `body`, `query`, `header`, or `row` (the stored row, "
                    "when an action refuses what the row holds)."
                )
            ),
        ]
        | None
    ) = None


class Problem(msgspec.Struct, omit_defaults=True):
    """The RFC 9457 body of every error response (documented in the OpenAPI schema)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None
    # A 409 refusing what the row's state does not allow (API.md §5): that state.
    state: (
        Annotated[str, msgspec.Meta(description="409 of a state change: the row's current state.")] | None
    ) = None


_DESCRIPTIONS = {
    400: "Malformed request, or an invalid Host header",
    401: "Missing, invalid, expired or revoked bearer token",
    403: "Permission missing, or tenant suspended",
    404: "No such row in this tenant, or unknown tenant",
    409: "Conflict with existing data",
    412: "If-Match no longer matches the row; it is unchanged",
    413: "Request body too large; `detail` states the limit",
    415: "The body is not of the type the route reads",
    422: "Validation failed; `errors` names each bad field",
    429: "Too many requests; see Retry-After",
    503: "Database unavailable, or the tenant is being changed or removed",
}


# What any tenant route can answer whatever it does: invalid host, suspended tenant,
# unknown tenant, a query parameter it does not read (query.py), and 503 (the database
# down, or a request racing its tenant's deletion or migration: errors.py maps those to 503
# with Retry-After).
TENANT_STATUSES = (400, 403, 404, 422, 503)


# Why a token is refused (the 401's detail). Each says what the client can act on (log in
# again, use the right host) and no more: a forged or foreign token learns nothing of the
# users or tenants behind it. A deleted user's token reads as revoked.
class Refusal(StrEnum):
    MISSING = "token missing: send Authorization: Bearer <token> from POST /auth/login"
    MALFORMED = "token malformed"
    NOT_BEARER = "not a bearer token: send Authorization: Bearer <token>"
    REPEATED = "Authorization sent more than once: send one bearer token"
    EXPIRED = "token expired"
    REVOKED = "token revoked"
    OTHER_TENANT = "token issued for another tenant"


def problem_responses(*statuses: int, tenant_route: bool = True) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the problems a route can answer."""
    if tenant_route:
        statuses = tuple(sorted({*statuses, *TENANT_STATUSES}))
    return {
        status: ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS[status],
            media_type="application/problem+json",
            generate_examples=False,
        )
        for status in statuses
    }


def problem(
    status: int,
    detail: str,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemDetailsException:
    """A problem exception; ``type_`` defaults to one derived from the status.

    Every entry of ``errors`` says where its field is (``source``): a body's unless given
    (query parameters and headers say so where they are checked)."""
    if isinstance(extra.get("errors"), list):
        extra["errors"] = [e if "source" in e else {**e, "source": "body"} for e in extra["errors"]]
    return ProblemDetailsException(
        status_code=status,
        type_=type_ or _TYPES.get(status, "about:blank"),
        title=HTTPStatus(status).phrase,
        detail=detail,
        headers=headers,
        extra=extra or None,
    )


def field_problem(status: int, field: str, message: str) -> Exception:
    return problem(status, f"{field}: {message}.", errors=[{"field": field, "message": message}])


def with_errors(refused: ProblemDetailsException, more: list[dict[str, str]]) -> Exception:
    """One 422 naming the fields ``refused`` (a 422) names and ``more``: every bad field
    of a body in one answer (API.md §5), where they are found by separate checks."""
    if not more:
        return refused
    named = list(refused.extra.get("errors") or []) if isinstance(refused.extra, dict) else []
    return problem(422, "The request is not valid.", errors=[*named, *more])


# msgspec names the field in the message, not in the location, for these two errors.
_FIELD_IN_MESSAGE = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def _validation_errors(extra: Any) -> list[dict[str, str]]:
    errors = []
    for item in extra if isinstance(extra, list) else []:
        if isinstance(item, dict):
            message = readable(str(item.get("message", "invalid value")))
            field = str(item.get("key", ""))
            if field == "data" and (named := _FIELD_IN_MESSAGE.search(message)):
                field = named.group(1)
            entry = {"field": field, "message": message}
            if "source" in item:
                source = item["source"]
                entry["source"] = str(getattr(source, "value", source))
            errors.append(entry)
    return errors


def http_exception_to_problem(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ProblemDetailsException):
        return exc
    status = exc.status_code
    if isinstance(exc, ValidationException):
        return _validation_problem(exc, _validation_errors(exc.extra))
    if status >= 500:
        return problem(status, HTTPStatus(status).description, headers=exc.headers)
    if status == 401:
        detail = str(exc.detail or "")
        if detail.startswith("No JWT token found"):  # Litestar's wording, naming its internals
            detail = Refusal.MISSING
        elif not detail or detail == HTTPStatus.UNAUTHORIZED.phrase:
            detail = Refusal.REVOKED
        return problem(401, detail, headers={**(exc.headers or {}), "WWW-Authenticate": "Bearer"})
    if status == 404 and exc.detail in ("", HTTPStatus.NOT_FOUND.phrase):
        # A bare 404 is Litestar's router: a path whose shape fits a route but whose
        # parameter does not convert, in this API an id that is not a UUID (every other
        # path reaches the catch-all route, every 404 of Atrium's own says more).
        return problem(404, "Nothing is served at this path: ids in paths are UUIDs.", headers=exc.headers)
    detail = (
        exc.detail
        if exc.detail and exc.detail != HTTPStatus(status).phrase
        else HTTPStatus(status).description
    )
    return problem(status, _readable(str(detail)) if status == 400 else detail, headers=exc.headers)


# msgspec's words for a JSON body it cannot read, as a client can act on them: it says
# "truncated" also for a \u escape that is half a surrogate pair, and names no field for a
# number beyond a double.
_UNREADABLE_JSON = {
    "Input data was truncated": (
        "The body is not valid JSON: it ends too early, or a \\u escape is not a character."
    ),
    "Number out of range": "The body is not valid JSON here: a number is beyond the range of a 64-bit float.",
}


def _validation_problem(exc: ValidationException, errors: list[dict[str, str]]) -> ProblemDetailsException:
    if errors:
        return problem(422, "The request is not valid.", errors=errors, headers=exc.headers)
    return problem(400, _readable(str(exc.detail or "The request could not be read.")), headers=exc.headers)


def _readable(detail: str) -> str:
    return next((said for words, said in _UNREADABLE_JSON.items() if detail.startswith(words)), detail)


# Route option: ``query -> problems`` of the route's list (``listing.Listing.problems_of``),
# named in Litestar's 422 for a bad ``limit`` or ``offset`` (``validation_problem``).
LIST_PROBLEMS = "list_problems"


def validation_problem(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """A failed validation, with every bad field of a JSON body named (``validation.py``)."""
    errors = _validation_errors(exc.extra)
    list_problems = request.route_handler.opt.get(LIST_PROBLEMS)
    if list_problems is not None and any(e.get("source") == "query" for e in errors):
        # A bad limit or offset is Litestar's to find, before the list reads its other
        # parameters: those are named in the same 422.
        named = {e["field"] for e in errors}
        errors += [e for e in list_problems(request.query_params) if e["field"] not in named]
    if any(e.get("source") == "body" for e in errors):
        more = body_problems(request)
        if more is None:
            return problem(400, "The request body must be a JSON object.").to_response(request)
        if more:
            others = [e for e in errors if e.get("source") != "body"]
            errors = others + more  # a body's fields, as ``problem`` says by default
    return _validation_problem(exc, errors).to_response(request)


# Route option: the size of a file the route takes, stated in its 413 instead of the
# request's limit, which allows for the multipart framing around the file.
FILE_LIMIT = "file_limit"


def too_large(what: str, limit: int | None, headers: dict[str, str] | None = None) -> ProblemDetailsException:
    """413 stating the limit ``what`` (a file, the request body) went over."""
    if not limit:
        return problem(413, f"{what.capitalize()} is too large.", headers=headers)
    return problem(
        413,
        f"{what.capitalize()} is larger than the limit of {limit} bytes ({limit / 1048576:g} MiB).",
        headers=headers,
    )


def too_large_problem(request: Request[Any, Any, Any], exc: RequestEntityTooLarge) -> Response[Any]:
    """413 with the limit the client went over (the route's file's, else the route's
    request body's, else the application's)."""
    handler = request.route_handler
    if file_limit := handler.opt.get(FILE_LIMIT):
        return too_large("the file", file_limit, exc.headers).to_response(request)
    return too_large("the request body", handler.resolve_request_max_body_size(), exc.headers).to_response(
        request
    )


def _is_database_unavailable(exc: BaseException | None) -> bool:
    # advanced-alchemy wraps driver errors in its own types: look down the cause chain.
    while exc is not None:
        # psycopg's own classes: reads on the driver connection (read_transaction.py).
        if isinstance(exc, (PoolTimeoutError, OperationalError, InterfaceError, psycopg.OperationalError)):
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        exc = exc.__cause__
    return False


# What a request meets when its tenant's schema changes under it: dropped by a deletion
# (the schema or its tables are gone), or altered by a migration (a column not there yet,
# a prepared plan whose tables changed). The tenant is being deleted or changed, which is
# no fault of the client's: 503, and the deletion's own 404 follows once every process
# has seen it (API.md §1).
_SCHEMA_CHANGING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.FeatureNotSupported,
)


def _is_schema_changing(exc: BaseException | None) -> bool:
    while exc is not None:
        orig = getattr(exc, "orig", None)
        for candidate in (exc, orig):
            if isinstance(candidate, _SCHEMA_CHANGING):
                return True
            # A statement that waited on a table while it was dropped.
            if isinstance(candidate, psycopg.errors.InternalError_) and "could not open relation" in str(
                candidate
            ):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_crossed(exc: BaseException | None) -> bool:
    """Whether PostgreSQL undid the transaction because it crossed another one (a deadlock, a
    serialization failure): nothing was written, and the same request sent again succeeds."""
    while exc is not None:
        if isinstance(getattr(exc, "orig", None) or exc, _CROSSED):
            return True
        exc = exc.__cause__
    return False


_CROSSED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def crossed_writes() -> ProblemDetailsException:
    # 409, not 503: the database is up; the request met a concurrent one and may be resent
    # as it is (with its Idempotency-Key too: the key was undone with the rest).
    return problem(
        409,
        "This request crossed a concurrent change to the same rows and was undone; nothing "
        "was changed. Send it again.",
        type_="conflict",
    )


def tenant_unavailable() -> ProblemDetailsException:
    return problem(
        503,
        "This tenant is being changed or removed; try again shortly.",
        type_="tenant-unavailable",
        headers={"Retry-After": "1"},
    )


def database_unavailable() -> ProblemDetailsException:
    return problem(
        503,
        "The database is unavailable; try again shortly.",
        type_="database-unavailable",
        headers={"Retry-After": "1"},
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, RecursionError):
        # A backstop: bodies nested deeper than bodies.MAX_JSON_DEPTH are refused before
        # anything decodes them, and no code walks client input recursively.
        return problem(400, "The request is nested too deeply.").to_response(request)
    if isinstance(exc, NotFoundError):
        return problem(404, "No such row in this tenant.").to_response(request)
    if isinstance(exc, RedisError):
        logger.warning("redis unavailable: %s", exc)
        return problem(
            503, "A backing service is unavailable; try again shortly.", headers={"Retry-After": "1"}
        ).to_response(request)
    if _is_crossed(exc):
        logger.info("%s %s crossed a concurrent write: %s", request.method, request.url.path, exc)
        return crossed_writes().to_response(request)
    if _is_database_unavailable(exc):
        logger.warning("database unavailable: %s", exc)
        return database_unavailable().to_response(request)
    if _is_schema_changing(exc):
        logger.warning("tenant schema changed under %s %s: %s", request.method, request.url.path, exc)
        return tenant_unavailable().to_response(request)
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "An unexpected error occurred.").to_response(request)


def problem_details_config() -> ProblemDetailsConfig:
    return ProblemDetailsConfig(
        enable_for_all_http_exceptions=False,
        exception_to_problem_detail_map={HTTPException: http_exception_to_problem},
    )
