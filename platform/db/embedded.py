"""The zero-setup database: an embedded PostgreSQL (pgserver) kept under ``./.atrium/``.

Used only when no ``DATABASE_URL`` is given. The data directory and a generated
secret key persist across starts, so a second start reuses both.
"""

from __future__ import annotations

import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

STATE_DIR_NAME = ".atrium"
DATABASE_NAME = "atrium"


def state_dir() -> Path:
    return Path.cwd() / STATE_DIR_NAME


def has_embedded_data() -> bool:
    return (state_dir() / "pgdata" / "PG_VERSION").exists()


def _private_file(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


def secret_key() -> str:
    path = state_dir() / "secret_key"
    if not path.exists():
        _private_file(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def start_embedded_postgres() -> str:
    """Start (or attach to) the embedded server; returns a ``postgresql://`` URL."""
    state_dir().mkdir(mode=0o700, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server: Any = pgserver.get_server(state_dir() / "pgdata", cleanup_mode="stop")
    admin_uri = server.get_uri("postgres")
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
    # Keep a reference: pgserver stops the server when its last handle is collected.
    global _server
    _server = server
    return server.get_uri(DATABASE_NAME)


_server: Any = None


def load_demo_credentials() -> dict[str, str] | None:
    path = state_dir() / "demo-owner.json"
    return json.loads(path.read_text()) if path.exists() else None


def save_demo_credentials(credentials: dict[str, str]) -> None:
    _private_file(state_dir() / "demo-owner.json", json.dumps(credentials, indent=2))


def save_served_port(port: int) -> None:
    """Remember the port ``atrium serve`` listens on, for the URLs the CLI prints later."""
    _private_file(state_dir() / "serve-port", str(port))


def served_port() -> int | None:
    """The port the last ``atrium serve`` in this folder listened on, if it left one."""
    path = state_dir() / "serve-port"
    try:
        port = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None
