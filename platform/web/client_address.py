"""The client address that per-address limits count (failed logins, public form posts).

It is the connection's peer as the ASGI server reports it: behind a reverse proxy listed in
``ATRIUM_FORWARDED_ALLOW_IPS`` (``atrium serve --forwarded-allow-ips``), uvicorn's own
proxy-headers middleware has already put the client that ``X-Forwarded-For`` names there;
from anyone else the header is ignored, so a client cannot name itself a new address.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else "unknown"
