"""Settings, read once from the environment.

Every setting is validated here so that a bad value stops the process at start-up with
one clear line (``SettingsError``) instead of failing later inside a request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    redis_url: str | None = None
    base_domain: str = "localhost"
    secret_key: str = ""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    bcrypt_rounds: int = 12
    token_ttl_seconds: int = 3600
    db_pool_size: int = 10
    db_max_overflow: int = 0
    db_pool_timeout: float = 5.0
    db_pool_recycle: int = 1800
    db_statement_timeout_ms: int = 30_000
    # PgBouncer in transaction mode before 1.21 cannot keep server-side prepared
    # statements; psycopg prepares after five runs of a query unless told not to.
    db_prepared_statements: bool = True
    # Statements each pooled connection keeps prepared (psycopg's default is 100). A tenant's
    # statements name its schema, so each tenant has its own, and the tenant-affine pool
    # gives a connection about tenants x HOMES (3) / pool size tenants: over 1,000 tenants
    # one held 170-360 statements with two homes. Each costs its backend ~50 KB: at most
    # ~25 MB per connection.
    db_prepared_max: int = 512
    tenant_cache_ttl: float = 30.0
    # Callers are dropped through the same channel as hosts; the TTL only bounds a missed
    # message. Each expiry reloads the caller with the four-relation query, and at 30 s
    # those reloads were up to a fifth of PostgreSQL's work over 1,000 tenants (bench/RESULTS.md).
    caller_cache_ttl: float = 300.0
    # The port clients reach tenants on, for the URLs Atrium prints and documents (8000 on
    # localhost, none elsewhere: a proxy on 443 in front).
    public_port: int | None = None
    # Anonymous posts to public forms each client address may make per minute, per tenant.
    public_posts_per_minute: int = 30
    debug: bool = False

    def tenant_url(self, slug: str, port: int | None = None) -> str:
        """The address a tenant is served at, as a client reaches it."""
        local = self.base_domain == "localhost"
        port = port or self.public_port or (8000 if local else None)
        scheme = "http" if local else "https"
        return f"{scheme}://{slug}.{self.base_domain}" + (f":{port}" if port else "")

    @property
    def sqlalchemy_url(self) -> URL:
        return to_sqlalchemy_url(self.database_url)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def to_sqlalchemy_url(database_url: str, driver: str = "psycopg") -> URL:
    """``postgresql://…`` as the operator writes it, as SQLAlchemy's psycopg 3 URL."""
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise SettingsError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    except ValueError:  # SQLAlchemy reads the port as a number while parsing
        raise SettingsError("DATABASE_URL's port is not a number") from None
    if url.get_backend_name() not in {"postgresql", "postgres"}:
        raise SettingsError("DATABASE_URL must be a postgresql:// URL")
    return url.set(drivername=f"postgresql+{driver}")


def _port(env: Mapping[str, str], name: str) -> int | None:
    port = _int(env, name, 0)
    if port > 65535:
        raise SettingsError(f"{name} must be a port number (1-65535), got {port}")
    return port or None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def normalize_base_domain(raw: str) -> str:
    domain = raw.strip().lower().rstrip(".")
    labels = domain.split(".")
    if not domain or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise SettingsError(f"ATRIUM_BASE_DOMAIN is not a valid domain name: {raw!r}")
    return domain


def load_settings(env: Mapping[str, str] | None = None, *, require_secret: bool = True) -> Settings:
    """Build the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    database_url = env.get("DATABASE_URL", "").strip()
    if not database_url:
        raise SettingsError("DATABASE_URL is not set (e.g. postgresql://user@127.0.0.1:5432/atrium)")
    to_sqlalchemy_url(database_url)  # validates
    secret = env.get("ATRIUM_SECRET_KEY", "")
    if require_secret and len(secret) < 32:
        raise SettingsError("ATRIUM_SECRET_KEY must be set to at least 32 characters")
    redis_url = env.get("REDIS_URL", "").strip() or None
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
    bcrypt_rounds = _int(env, "ATRIUM_BCRYPT_ROUNDS", 12, minimum=4)
    if bcrypt_rounds > 31:
        raise SettingsError("ATRIUM_BCRYPT_ROUNDS must be between 4 and 31")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        base_domain=normalize_base_domain(env.get("ATRIUM_BASE_DOMAIN", "localhost")),
        secret_key=secret,
        max_upload_bytes=_int(env, "ATRIUM_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES, minimum=1),
        bcrypt_rounds=bcrypt_rounds,
        token_ttl_seconds=_int(env, "ATRIUM_TOKEN_TTL_SECONDS", 3600, minimum=60),
        db_pool_size=_int(env, "ATRIUM_DB_POOL_SIZE", 10, minimum=1),
        db_max_overflow=_int(env, "ATRIUM_DB_MAX_OVERFLOW", 0),
        db_pool_timeout=_float(env, "ATRIUM_DB_POOL_TIMEOUT", 5.0),
        db_pool_recycle=_int(env, "ATRIUM_DB_POOL_RECYCLE", 1800, minimum=1),
        db_statement_timeout_ms=_int(env, "ATRIUM_DB_STATEMENT_TIMEOUT_MS", 30_000, minimum=1),
        db_prepared_statements=_bool(env, "ATRIUM_DB_PREPARED_STATEMENTS", True),
        db_prepared_max=_int(env, "ATRIUM_DB_PREPARED_MAX", 512, minimum=1),
        tenant_cache_ttl=_float(env, "ATRIUM_TENANT_CACHE_TTL", 30.0),
        caller_cache_ttl=_float(env, "ATRIUM_CALLER_CACHE_TTL", 300.0),
        public_port=_port(env, "ATRIUM_PUBLIC_PORT"),
        public_posts_per_minute=_int(env, "ATRIUM_PUBLIC_POSTS_PER_MINUTE", 30, minimum=1),
        debug=_bool(env, "ATRIUM_DEBUG", False),
    )
