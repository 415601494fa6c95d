"""The interactive docs page at ``/schema``, served whole by the app itself.

Litestar's render plugins load their scripts from a CDN, unpinned or at a version of
their choosing: the page is blank wherever the CDN cannot be reached (air-gapped and
corporate networks) and changes under the user's feet. Swagger UI 5 (it renders OpenAPI
3.1; Swagger UI 4 refuses it) comes instead from the pinned ``swagger-ui-bundle-v2``
package and is served from ``/schema/assets/<version>/``, a platform path that answers
on every host like ``/schema`` itself. The version in the path lets browsers keep the
files for good.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Router, get
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.response import File
from swagger_ui_bundle import swagger_ui_path

from atrium.platform.web.errors import problem

SWAGGER_UI_VERSION = Path(str(swagger_ui_path)).name.removeprefix("swagger-ui-")
ASSETS_PATH = f"/schema/assets/{SWAGGER_UI_VERSION}"
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
# Only what the page loads: the package also ships source maps and demo pages.
ASSETS = ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "favicon-32x32.png")


@get(
    "/{name:str}",
    include_in_schema=False,
    exclude_from_auth=True,
    cache_control=CacheControlHeader(public=True, max_age=31_536_000),
    sync_to_thread=False,
)
def docs_asset(name: FromPath[str]) -> File:
    if name not in ASSETS:
        raise problem(404, "No such docs asset.")
    path = Path(str(swagger_ui_path)) / name
    return File(path, media_type=_MEDIA_TYPES[path.suffix], content_disposition_type="inline")


def docs_assets_router() -> Router:
    return Router(ASSETS_PATH, route_handlers=[docs_asset], include_in_schema=False)


def docs_render_plugin() -> SwaggerRenderPlugin:
    """Swagger UI at ``/schema`` (the first plugin is also the root) and ``/schema/swagger``."""
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        path="/swagger",
    )
