"""Login timing: an unknown email against a known email with a wrong password.

API.md §4 says both take about the same time (an unknown email still spends one bcrypt
check). This prints the figures; it asserts nothing.

    DATABASE_URL=postgresql://root@127.0.0.1:5432/postgres .venv/bin/python bench/login_timing.py [-n 50]

``DATABASE_URL`` names a server (and a database to connect to for administration). The
script creates a scratch database there, provisions one tenant, serves the app in-process
(``create_app`` through httpx's ASGI transport, as the tests do), measures, and drops the
scratch database. The login throttle is replaced by one with unreachable limits, so that
every attempt is a real password check instead of a 429.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from atrium.platform.app import create_app
from atrium.platform.db.alembic_runner import upgrade_platform
from atrium.platform.db.engines import create_operator_engine
from atrium.platform.security.login_throttle import LoginThrottle, ThrottleLimits
from atrium.platform.settings import Settings, to_sqlalchemy_url
from atrium.platform.stores import MemoryCounter
from atrium.platform.tenancy.provisioning import OwnerSpec, provision_tenant

UNLIMITED = ThrottleLimits(per_email=10**9, per_client=10**9)


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new database on the server of ``server_url``, dropped afterwards."""
    name = f"atrium_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(server_url).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def summary(samples: list[float]) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds."""
    ms = [s * 1000 for s in samples]
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return statistics.median(ms), p95


async def measure(
    settings: Settings, host: str, email: str, attempts: int, warmup: int
) -> dict[str, list[float]]:
    app = create_app(settings, login_throttle=LoginThrottle(MemoryCounter(), UNLIMITED))
    transport = httpx.ASGITransport(app=app)
    samples: dict[str, list[float]] = {"unknown email": [], "wrong password": []}
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url=f"http://{host}", timeout=120) as client,
    ):

        async def attempt(kind: str, record: bool) -> None:
            login = email if kind == "wrong password" else f"nobody-{uuid.uuid4().hex[:12]}@bench.example"
            body = {"email": login, "password": secrets.token_urlsafe(16)}
            started = time.perf_counter()
            response = await client.post("/auth/login", json=body)
            elapsed = time.perf_counter() - started
            if response.status_code != 401:
                raise SystemExit(
                    f"expected 401 for {kind}, got {response.status_code}: {response.text[:200]}"
                )
            if record:
                samples[kind].append(elapsed)

        for _ in range(warmup):
            for kind in samples:
                await attempt(kind, record=False)
        # Alternate the two kinds (and which goes first) so drift affects both alike.
        for i in range(attempts):
            kinds = list(samples) if i % 2 == 0 else list(reversed(samples))
            for kind in kinds:
                await attempt(kind, record=True)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--attempts", type=int, default=50, help="attempts of each kind (default 50)")
    parser.add_argument(
        "--rounds", type=int, default=12, help="bcrypt cost (default 12, the production default)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured attempts of each kind first")
    args = parser.parse_args(argv)
    server_url = os.environ.get("DATABASE_URL", "").strip()
    if not server_url:
        print("DATABASE_URL is not set (e.g. postgresql://root@127.0.0.1:5432/postgres)", file=sys.stderr)
        return 2
    if args.attempts < 1:
        print("--attempts must be at least 1", file=sys.stderr)
        return 2
    to_sqlalchemy_url(server_url)  # validates
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    with scratch_database(server_url) as url:
        settings = Settings(database_url=url, secret_key=secrets.token_urlsafe(48), bcrypt_rounds=args.rounds)
        engine = create_operator_engine(settings)
        try:
            with engine.begin() as conn:
                upgrade_platform(conn)
            slug = f"bench-{uuid.uuid4().hex[:8]}"
            email = f"owner@{slug}.example"
            owner = OwnerSpec("Bench Owner", email, "+1 555 0100", secrets.token_urlsafe(16))
            provision_tenant(engine, slug, "Bench", owner, bcrypt_rounds=args.rounds)
        finally:
            engine.dispose()
        samples = asyncio.run(measure(settings, f"{slug}.localhost", email, args.attempts, args.warmup))

    print(f"POST /auth/login, bcrypt cost {args.rounds}, {args.attempts} attempts of each kind (ms)")
    print(f"{'':16} {'median':>9} {'p95':>9}")
    figures = {kind: summary(values) for kind, values in samples.items()}
    for kind, (median, p95) in figures.items():
        print(f"{kind:16} {median:9.1f} {p95:9.1f}")
    (unknown_median, unknown_p95), (known_median, known_p95) = (
        figures["unknown email"],
        figures["wrong password"],
    )
    print(
        f"{'ratio':16} {known_median / unknown_median:9.3f} {known_p95 / unknown_p95:9.3f}"
        "   (wrong password / unknown email)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
