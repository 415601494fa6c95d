"""The repository layout must never shadow the standard library's ``platform``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
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


def test_every_source_folder_is_packaged() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for import_root, folder in config["package-dir"].items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            relative = path.parent.relative_to(ROOT / folder).parts
            package = ".".join((import_root, *relative))
            assert package in listed, f"{package} ({path.parent}) is missing from pyproject packages"
