"""Limits on failed logins, per email and per client address, keyed by tenant.

Counters live in a Litestar store (Redis with ``REDIS_URL``, so every app process
shares them; memory otherwise). Litestar's stores have no atomic increment, so a
burst of concurrent failures can overshoot a limit by the burst's size; the limit
still holds for any sustained guessing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from litestar.stores.base import Store

from atrium.platform.web.errors import problem


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    per_email: int = 5
    per_client: int = 20
    window_seconds: int = 900


class LoginThrottle:
    def __init__(self, store: Store, limits: ThrottleLimits | None = None) -> None:
        self.store = store
        self.limits = limits or ThrottleLimits()

    def _keys(self, tenant_id: uuid.UUID, email: str, client: str) -> list[tuple[str, int]]:
        return [
            (f"{tenant_id}:email:{email.strip().lower()}", self.limits.per_email),
            (f"{tenant_id}:client:{client}", self.limits.per_client),
        ]

    async def check(self, tenant_id: uuid.UUID, email: str, client: str) -> None:
        """Raise a 429 problem with ``Retry-After`` while either key is over its limit."""
        for key, limit in self._keys(tenant_id, email, client):
            raw = await self.store.get(key)
            if raw is not None and int(raw) >= limit:
                retry_after = max(1, await self.store.expires_in(key) or self.limits.window_seconds)
                raise problem(
                    429,
                    "Too many failed logins; try again later.",
                    headers={"Retry-After": str(retry_after)},
                )

    async def record_failure(self, tenant_id: uuid.UUID, email: str, client: str) -> None:
        for key, _ in self._keys(tenant_id, email, client):
            raw = await self.store.get(key)
            remaining = await self.store.expires_in(key) if raw is not None else None
            count = int(raw) + 1 if raw is not None else 1
            await self.store.set(key, str(count).encode(), expires_in=remaining or self.limits.window_seconds)

    async def record_success(self, tenant_id: uuid.UUID, email: str) -> None:
        await self.store.delete(f"{tenant_id}:email:{email.strip().lower()}")
