"""The docs page at ``/schema`` works with no network: a real browser renders it offline."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from atrium.platform.app import create_app
from atrium.platform.settings import Settings
from atrium.platform.web.docs import ASSETS, ASSETS_PATH, SWAGGER_UI_VERSION
from tests.conftest import serve
from tests.servers import free_port, require, wait_for_port


@contextmanager
def listening(settings: Settings) -> Iterator[int]:
    """The app behind a real socket (a browser cannot use an in-process transport)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port, timeout=60)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def render_offline(url: str, tmp_path: Path) -> str:
    """The page's DOM once its scripts ran, in a Chromium that reaches nothing but loopback.

    Every name but ``*.localhost`` fails to resolve, and every request that is not to
    loopback goes to a proxy on a closed port: a CDN asset cannot load.
    """
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    require(binary is not None, "chromium (Debian package chromium; .ci/run installs it)")
    assert binary is not None
    result = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE *.localhost, EXCLUDE localhost",
            "--proxy-server=http://127.0.0.1:9",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("host", ["ghost.localhost", "localhost"])
def test_docs_page_renders_the_operations_offline(settings: Settings, host: str, tmp_path: Path) -> None:
    with listening(settings) as port:
        dom = render_offline(f"http://{host}:{port}/schema", tmp_path)
    # Swagger UI draws one block per operation, each naming its path.
    assert "opblock-summary-path" in dom, dom[-2000:]
    assert 'data-path="/users/{item_id}"' in dom
    assert 'data-path="/auth/login"' in dom


async def test_docs_page_loads_its_assets_from_the_app(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        page = (await client.get("/schema", headers={"Host": "acme.localhost"})).text
        assert "http://" not in page.split("<body", 1)[0] and "https://" not in page.split("<body", 1)[0]
        for name in ASSETS:
            assert f"{ASSETS_PATH}/{name}" in page, name
            asset = await client.get(f"{ASSETS_PATH}/{name}", headers={"Host": "ghost.localhost"})
            assert asset.status_code == 200 and asset.content, name
            assert "max-age=31536000" in asset.headers["cache-control"]
        missing = await client.get(f"{ASSETS_PATH}/index.html", headers={"Host": "localhost"})
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
    # Swagger UI 4 refuses OpenAPI 3.1 documents.
    assert int(SWAGGER_UI_VERSION.split(".")[0]) >= 5


def test_docs_assets_are_pinned() -> None:
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert f'"swagger-ui-bundle-v2=={SWAGGER_UI_VERSION}"' in pyproject
