"""Live events to websockets, across every app process: Litestar's channels plugin.

With ``REDIS_URL`` the plugin's Redis pub/sub backend carries events between processes,
over a client made by the same setup as the tenant-invalidation listener's
(``resolution.redis_connection``); without it, events stay in the process (one worker).
Channel names start with the tenant id (``tenant_channel``), so a socket subscribed for
one tenant never hears another's events, whatever its code does with them.
"""

from __future__ import annotations

import uuid

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend

from atrium.platform.settings import Settings
from atrium.platform.tenancy.resolution import redis_connection


def channels_plugin(settings: Settings) -> ChannelsPlugin:
    if settings.redis_url:
        backend = RedisChannelsPubSubBackend(
            redis=redis_connection(settings.redis_url, health_check_interval=5), key_prefix="atrium-live"
        )
    else:
        backend = MemoryChannelsBackend()
    # Channel names are made per tenant at run time, so they cannot be listed up front.
    return ChannelsPlugin(backend=backend, arbitrary_channels_allowed=True)


def tenant_channel(tenant_id: uuid.UUID, topic: str) -> str:
    """The channel of ``topic`` (an area's events) in one tenant."""
    return f"{tenant_id}:{topic}"
