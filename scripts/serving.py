"""``atrium serve``: the zero-setup embedded start and the ASGI server."""

from __future__ import annotations

import os
import socket

import click

from atrium.platform.db import embedded
from atrium.platform.settings import load_settings

DEMO_SLUG = "demo"
DEMO_OWNER = {"name": "Demo Owner", "email": "owner@demo.example", "phone": "+1 555 0100"}


def prepare_embedded(port: int) -> None:
    """Start the embedded PostgreSQL, migrate it, and make sure the demo tenant exists.

    The URL and secret are put into the environment so that every server worker,
    which imports the app afresh, finds them.
    """
    from atrium.platform.db.alembic_runner import upgrade_platform
    from atrium.platform.db.engines import create_operator_engine
    from atrium.platform.security.passwords import generate_password
    from atrium.platform.tenancy.admin import TenantNotFound, get_tenant
    from atrium.platform.tenancy.provisioning import OwnerSpec, provision_tenant
    from atrium.platform.tenancy.schema_migrations import migrate_tenants

    click.echo("starting the embedded PostgreSQL under ./.atrium/ ...", err=True)
    os.environ["DATABASE_URL"] = embedded.start_embedded_postgres()
    os.environ.setdefault("ATRIUM_SECRET_KEY", embedded.secret_key())
    # The CLI run later in this folder prints tenant URLs with this port, and the docs
    # page's server entry names it, unless ATRIUM_PUBLIC_PORT says otherwise.
    embedded.save_served_port(port)
    os.environ.setdefault("ATRIUM_PUBLIC_PORT", str(port))
    settings = load_settings()
    engine = create_operator_engine(settings)
    try:
        with engine.begin() as conn:
            upgrade_platform(conn)
        try:
            get_tenant(engine, DEMO_SLUG)
        except TenantNotFound:
            password = generate_password()
            provision_tenant(
                engine,
                DEMO_SLUG,
                "Demo",
                OwnerSpec(DEMO_OWNER["name"], DEMO_OWNER["email"], DEMO_OWNER["phone"], password),
                bcrypt_rounds=settings.bcrypt_rounds,
                demo=True,
            )
            embedded.save_demo_credentials({"email": DEMO_OWNER["email"], "password": password})
        migrate_tenants(settings, engine, concurrency=1)
    finally:
        engine.dispose()
    credentials = embedded.load_demo_credentials() or {}
    click.echo(f"demo tenant: http://{DEMO_SLUG}.{settings.base_domain}:{port}", err=True)
    if credentials:
        click.echo(f"  owner login: {credentials['email']} / {credentials['password']}", err=True)
    click.echo(f"  API docs:    http://{DEMO_SLUG}.{settings.base_domain}:{port}/schema", err=True)


def ensure_port_free(host: str, port: int) -> None:
    """One line and exit 1 when ``host:port`` cannot be bound (another server has it).

    uvicorn printed its own lines for it and then, with workers, never exited: it ignored
    SIGTERM until killed. Bound here as uvicorn binds (``SO_REUSEADDR``), so a port left in
    TIME_WAIT by a previous run is still free; a server that takes the port between this
    check and uvicorn's bind meets uvicorn's own refusal.
    """
    from atrium.scripts.cli import OperatorError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OperatorError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def run_server(host: str, port: int, workers: int, forwarded_allow_ips: str | None = None) -> None:
    """uvicorn with the app's limits. ``forwarded_allow_ips``: the proxies whose
    ``X-Forwarded-For`` and ``X-Forwarded-Proto`` uvicorn's own proxy-headers middleware
    applies (the client address that per-address limits count); none by default."""
    import uvicorn

    from atrium.platform.web.server import GuardedHttpToolsProtocol

    uvicorn.run(
        "atrium.platform.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
        http=GuardedHttpToolsProtocol,  # header size and slow-client limits
        # No permessage-deflate on websockets: its zlib contexts, kept per socket for its
        # lifetime, were about half of an idle chat socket's memory, to compress frames of a
        # few hundred bytes (bench/RESULTS.md, chats).
        ws_per_message_deflate=False,
        log_level="info",
    )
