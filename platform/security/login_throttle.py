"""Limits on login attempts, per email and per client address, keyed by tenant.

An attempt is taken *before* the password is checked, atomically against both
counters (``atrium.platform.stores``): a burst of concurrent logins then makes no
more password checks than the limit, however many requests arrive at once. A
successful login gives its attempt back to the client's counter and clears the
email's, so only failures add up; an attempt that checked no password (the database
failed) is given back too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from atrium.platform.stores import AttemptCounter
from atrium.platform.web.errors import problem


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    per_email: int = 5
    per_client: int = 20
    window_seconds: int = 900


def _email_key(tenant_id: uuid.UUID, email: str) -> str:
    return f"{tenant_id}:email:{email.strip().lower()}"


def _client_key(tenant_id: uuid.UUID, client: str) -> str:
    return f"{tenant_id}:client:{client}"


class LoginThrottle:
    def __init__(self, counter: AttemptCounter, limits: ThrottleLimits | None = None) -> None:
        self.counter = counter
        self.limits = limits or ThrottleLimits()

    async def take(self, tenant_id: uuid.UUID, email: str, client: str | None) -> None:
        """Count this attempt, or raise a 429 problem with ``Retry-After`` while either
        the email or the client has used up its attempts. ``client`` is ``None`` for a
        signed-in user proving their password (``PATCH /auth/me``): a token reaches one
        account, so there is no spraying across emails for the client's count to stop,
        and others' failures at the same address must not block a profile change."""
        limits = [(_email_key(tenant_id, email), self.limits.per_email)]
        if client is not None:
            limits.append((_client_key(tenant_id, client), self.limits.per_client))
        retry_after = await self.counter.take(limits, self.limits.window_seconds)
        if retry_after:
            raise problem(
                429,
                "Too many failed logins; try again later.",
                headers={"Retry-After": str(retry_after)},
            )

    async def give_back(self, tenant_id: uuid.UUID, email: str, client: str | None) -> None:
        """Uncount an attempt that checked no password."""
        await self.counter.give_back(_email_key(tenant_id, email))
        if client is not None:
            await self.counter.give_back(_client_key(tenant_id, client))

    async def record_success(self, tenant_id: uuid.UUID, email: str, client: str | None) -> None:
        await self.counter.reset(_email_key(tenant_id, email))
        if client is not None:
            await self.counter.give_back(_client_key(tenant_id, client))
