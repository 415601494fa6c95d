"""The README's benchmark table names every figure bench/run.py makes, so that the docs
follow the figures an area adds (the section once drifted into three half-merged copies
that left three areas out)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _figures() -> list[str]:
    # In a process of its own: bench/'s modules (common, serving, forms, …) have names too
    # plain to put on the test process's path.
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, 'bench'); import run; print(*run.FIGURES)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_the_readme_names_every_benchmark_figure() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Benchmarks") :]
    figures = _figures()
    assert "write" in figures and "forms" in figures, figures
    missing = [figure for figure in figures if f"`{figure}`" not in section]
    assert not missing, f"README's Benchmarks section does not name the figures {missing}"
