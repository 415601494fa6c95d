"""Areas of the tenant API, each declared once, and what is derived from the declarations.

An area (identity, media, events, ...) is a package under ``tenants/`` whose ``area.py``
declares ``AREA = Area(...)``: its resources and any routers of its own. Importing the
declaration imports the area's models, routes and services. From the declarations come
the app's routers, the permission names, the built-in roles of new tenants and the test
matrices; packaging finds the package by itself (setup.py). Nothing lists the areas by
hand: ``discover`` finds every package of ``tenants/`` that has an ``area.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from litestar import Router

from atrium.platform.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from atrium.platform.tenancy.demo import DemoTenant

if TYPE_CHECKING:
    from atrium.platform.web.resources import ResourceSpec


def _no_routers(_settings: Settings) -> Sequence[Router]:
    return ()


@dataclass(frozen=True)
class Area:
    name: str
    resources: Sequence[ResourceSpec] = ()
    # Routers beyond the resources' own (``/auth``), made with the settings.
    routers: Callable[[Settings], Sequence[Router]] = field(default=_no_routers)
    # Sample rows for a demo tenant (platform/tenancy/demo.py), written in its schema.
    demo: Callable[[Connection, DemoTenant], None] | None = None

    def build_routers(self, settings: Settings) -> list[Router]:
        from atrium.platform.web.resources import crud_router

        return [*self.routers(settings), *(crud_router(spec, settings) for spec in self.resources)]


def discover(package: str) -> tuple[Area, ...]:
    """Every area under ``package``, by name: each subpackage's ``area.AREA``."""
    root = importlib.import_module(package)
    found = []
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        name = f"{package}.{info.name}"
        try:
            module = importlib.import_module(f"{name}.area")
        except ModuleNotFoundError as exc:
            if exc.name != f"{name}.area":
                raise
            raise TypeError(
                f"{name} has no area.py declaring AREA (every package under {package} must)"
            ) from None
        area = getattr(module, "AREA", None)
        if not isinstance(area, Area):
            raise TypeError(f"{name}.area must declare AREA = Area(...)")
        found.append(area)
    resources = [spec.resource for area in found for spec in area.resources]
    if duplicated := sorted({r for r in resources if resources.count(r) > 1}):
        raise TypeError(f"resources declared by two areas: {duplicated}")
    return tuple(found)
