"""Handlers, authentication and services receive their parts; none fetches them from app.state."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_FACTORY = ROOT / "platform" / "app.py"
STATE_READ = re.compile(r"\bapp\.state\b(?!``)")
# The factory publishes the app's parts for tests and benchmarks to inspect.
PUBLISHED = re.compile(r"^\s*app\.state\.\w+ = \w+$")


def test_nothing_in_the_app_fetches_its_parts_from_app_state() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("platform", "tenants")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if STATE_READ.search(line) and not (path == APP_FACTORY and PUBLISHED.match(line))
    ]
    assert found == [], "inject these instead:\n" + "\n".join(found)
