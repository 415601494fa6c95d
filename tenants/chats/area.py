"""Chats: rooms, direct messages, threads, read state and live delivery (API.md §9)."""

from atrium.platform.areas import Area
from atrium.tenants.chats import demo
from atrium.tenants.chats.routes import CHATS

AREA = Area("chats", resources=[CHATS], demo=demo.seed)
