"""The areas of the tenant API: every package here with an ``area.py`` (platform/areas.py)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from litestar import Router

from atrium.platform.areas import Area, discover
from atrium.platform.settings import Settings

if TYPE_CHECKING:
    from atrium.platform.web.resources import ResourceSpec


@cache
def areas() -> tuple[Area, ...]:
    return discover(__name__.rpartition(".")[0])


def resource_specs() -> list[ResourceSpec]:
    return [spec for area in areas() for spec in area.resources]


def tenant_routers(settings: Settings) -> list[Router]:
    return [router for area in areas() for router in area.build_routers(settings)]
