"""Packaging's one computed part: the packages. Everything else is in pyproject.toml.

The top folders carry no ``__init__.py`` and are mapped to ``atrium.*`` import names (see
pyproject.toml for why); setuptools' own discovery cannot rename what it finds, so the
packages under each folder are found here. A new area's package is packaged without a
list entry.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).resolve().parent
PACKAGE_DIRS = {
    "atrium.platform": "platform",
    "atrium.tenants": "tenants",
    "atrium.migrations": "migrations",
    "atrium.scripts": "scripts",
}


def packages() -> list[str]:
    found = []
    for name, folder in PACKAGE_DIRS.items():
        found.append(name)
        found += [
            f"{name}.{sub}"
            for sub in find_namespace_packages(where=str(ROOT / folder), exclude=["*__pycache__*"])
            if any((ROOT / folder / sub.replace(".", "/")).glob("*.py"))
        ]
    return sorted(found)


if __name__ == "__main__":
    setup(package_dir=PACKAGE_DIRS, packages=packages())
