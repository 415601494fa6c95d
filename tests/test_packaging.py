"""The repository layout must never shadow the standard library's ``platform``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("cwd", [ROOT, ROOT / "platform", ROOT / "tests"])
def test_stdlib_platform_intact_from_any_directory(cwd: Path) -> None:
    code = "import platform, sys; print(platform.system()); import atrium.platform.settings"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Linux"


def test_stdlib_platform_intact_inside_pytest() -> None:
    import platform

    assert callable(platform.system) and platform.system()
    assert not (ROOT / "platform" / "__init__.py").exists()
    assert not (ROOT / "tenants" / "__init__.py").exists()


def test_every_source_file_is_in_the_wheel(tmp_path: Path) -> None:
    """setup.py finds the packages (a new area's too): the built wheel holds every source file."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("atrium-*.whl")
    packaged = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("atrium/")}
    sources = {
        f"atrium/{folder}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder in ("platform", "tenants", "migrations", "scripts")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in {".py", ".mako"} and "__pycache__" not in path.parts
    }
    assert sources - packaged == set()
    assert "atrium/tenants/media/area.py" in packaged
