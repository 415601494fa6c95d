"""POST /auth/login, POST /auth/logout, GET and PATCH /auth/me."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.security.jwt import Token
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.db.read_transaction import READS_ON_DRIVER
from atrium.platform.security.callers import AuthUser
from atrium.platform.security.login_throttle import LoginThrottle
from atrium.platform.security.passwords import verify_password
from atrium.platform.security.permissions import effective
from atrium.platform.security.tokens import TokenAuth
from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import ResolvedTenant
from atrium.platform.web.bodies import JSON_BODY_LIMIT
from atrium.platform.web.client_address import client_address
from atrium.platform.web.concurrency import CHECKS_IF_MATCH, SENDS_ETAG, request_header, row_tag
from atrium.platform.web.errors import problem, problem_responses
from atrium.platform.web.openapi import TAG_DESCRIPTION
from atrium.tenants.identity.models import User
from atrium.tenants.identity.schemas import LoginRequest, LoginResponse, MeResponse, MeUpdate, UserRead
from atrium.tenants.identity.services import UserService


def _profile(user: User | AuthUser) -> UserRead:
    return msgspec.convert(user, UserRead, from_attributes=True)


@post(
    "/login",
    operation_id="login",
    exclude_from_auth=True,
    status_code=200,
    summary="Exchange email and password for a bearer token",
    request_max_body_size=JSON_BODY_LIMIT,
    responses=problem_responses(400, 401, 413, 415, 422, 429, 503),
    security=[{}],  # public; an empty list would be dropped and the global bearer scheme apply
)
async def login(
    data: JSONBody[LoginRequest],
    db_session: NamedDependency[AsyncSession],
    tenant: NamedDependency[ResolvedTenant],
    settings: NamedDependency[Settings],
    token_auth: NamedDependency[TokenAuth],
    login_throttle: NamedDependency[LoginThrottle],
    request: Request[Any, Any, Any],
) -> LoginResponse:
    client = client_address(request)
    # Taken before the password is checked, so a burst cannot check more than the limit.
    await login_throttle.take(tenant.id, data.email, client)
    email = data.email.strip().lower()
    try:
        # PostgreSQL refuses NUL in text; no stored email contains one anyway.
        user = (
            None
            if "\x00" in email
            else await db_session.scalar(select(User).where(func.lower(User.email) == email))
        )
        rounds = settings.bcrypt_rounds
        # An unknown email still spends one bcrypt check, so timing does not tell them apart.
        ok = await asyncio.to_thread(verify_password, data.password, user.password if user else None, rounds)
    except Exception:
        # No password was judged (the database failed): not a guess to count.
        await login_throttle.give_back(tenant.id, data.email, client)
        raise
    if user is None or not ok:
        raise problem(401, "The email or password is not correct.", type_="invalid-credentials")
    await login_throttle.record_success(tenant.id, data.email, client)
    return LoginResponse(
        access_token=token_auth.issue(user.id, tenant.id),
        token_type="bearer",  # noqa: S106 (the OAuth token type, not a secret)
        expires_in=settings.token_ttl_seconds,
        user=_profile(user),
    )


@post(
    "/logout",
    operation_id="logout",
    status_code=204,
    summary="Revoke the token used for this request",
    responses=problem_responses(401, 503),
)
async def logout(
    request: Request[AuthUser, Token, Any],
    db_session: NamedDependency[AsyncSession],
    token_auth: NamedDependency[TokenAuth],
) -> None:
    await token_auth.revoke(db_session, request.auth)


@get(
    "/me",
    operation_id="get_me",
    summary="The caller, their roles and effective permissions",
    description=(
        "The `ETag` is the caller's user row's, as on `GET /users/{id}`: `PATCH /auth/me` takes "
        "it in `If-Match`."
    ),
    responses=problem_responses(401, 503),
    opt={READS_ON_DRIVER: True, SENDS_ETAG: True},
)
async def me(request: Request[AuthUser, Token, Any]) -> Response[MeResponse]:
    user = request.user
    body = MeResponse(user=_profile(user), roles=list(user.roles), permissions=effective(user.permissions))
    return Response(body, headers={"ETag": row_tag(user)})


@patch(
    "/me",
    operation_id="update_me",
    summary="Change the caller's own name, phone or password",
    description=(
        "Every user may change their own `name`, `phone` and `password`; no permission is "
        "needed. `current_password` is required: missing, 422; wrong, 403 (and it counts as "
        "a failed login, 429 past the limit). Passwords follow the rules of `/users`: 8 "
        "characters to 72 bytes in UTF-8. A new password signs the user out everywhere: "
        "every token issued before it, this one included, is refused from then on. `If-Match` "
        "takes the `ETag` of `GET /auth/me` (412 if the caller's row changed since)."
    ),
    request_max_body_size=JSON_BODY_LIMIT,
    responses=problem_responses(400, 401, 403, 412, 413, 415, 422, 429, 503),
    opt={SENDS_ETAG: True, CHECKS_IF_MATCH: True},
)
async def update_me(
    data: JSONBody[MeUpdate],
    db_session: NamedDependency[AsyncSession],
    tenant: NamedDependency[ResolvedTenant],
    settings: NamedDependency[Settings],
    login_throttle: NamedDependency[LoginThrottle],
    request: Request[AuthUser, Token, Any],
) -> Response[UserRead]:
    service = UserService(db_session, tenant, request.user, settings)
    if_match = request_header(request.scope, b"if-match")
    user = await service.update_me(data, login_throttle, if_match)
    return Response(_profile(user), headers={"ETag": row_tag(user)})


auth_router = Router(
    path="/auth",
    route_handlers=[login, logout, me, update_me],
    tags=["auth"],
    opt={TAG_DESCRIPTION: "Log in and out on a tenant's host; the caller's own profile."},
)
