"""The memory figure (``memory``): the served app's resident memory after serving 10
tenants and after serving every tenant, and the largest PostgreSQL backend after the spread.

Two steps: the 10-tenant run comes before the spread (run.py registers it there), the rest
after it, as the figure has always been measured.
"""

from __future__ import annotations

import math
from typing import Any

from common import Bench, BenchError, Goal, Row, Step, Target
from reads import user_targets


def touch_every_tenant(bench: Bench, everyone: list[Target], rate: float) -> dict[str, Any]:
    """Round-robin runs until every target was requested; the figures of the longest run."""
    served, wrk = bench.served, bench.wrk
    assert served is not None
    remaining, runs = everyone, []
    for _ in range(4):
        needed = math.ceil(1.3 * len(remaining) / max(rate, 1.0)) + 1
        label = f"get_user over all {len(everyone)} tenants" + (f" ({len(remaining)} left)" if runs else "")
        run = wrk.measure(
            served.port, remaining, label, max(bench.args.duration, needed), "roundrobin", warmup=0
        )
        runs.append(run)
        # One wrk thread walks the list in order: the first `requests` targets were
        # reached. Several threads start at offsets of their own: then walk it all again.
        if bench.args.wrk_threads == 1:
            remaining = remaining[run["requests"] :]
        elif run["requests"] >= len(remaining):
            remaining = []
        if not remaining:
            return max(runs, key=lambda r: r["requests"])
        rate = max(run["rps"], 1.0)
    raise BenchError(f"{len(remaining)} of {len(everyone)} tenants were never requested")


def ten_tenants(bench: Bench) -> None:
    served = bench.served
    assert served is not None
    everyone = user_targets(bench).everyone
    served.check(served.port, everyone[-1])
    mem_10 = bench.wrk.measure(served.port, everyone[:10], "get_user over 10 tenants")
    rss_10, _ = served.app.rss_mb()
    bench.state["memory_10"] = (mem_10, rss_10)


def every_tenant(bench: Bench) -> None:
    served = bench.served
    assert served is not None
    mem_10, rss_10 = bench.state["memory_10"]
    everyone = user_targets(bench).everyone
    backends = bench.pg_backends("atrium")
    # Every tenant at least once: round robin, long enough at the rate just measured,
    # then again over whatever was not reached (the rate falls as tenants grow).
    mem_n = touch_every_tenant(bench, everyone, bench.results["spread"]["tn"]["rps"])
    rss_n, per_process = served.app.rss_mb()
    backends_n = bench.pg_backends("atrium")
    bench.results["memory"] = {
        "tenants_n": len(everyone),
        "rss_mb_10": round(rss_10, 1),
        "rss_mb_n": round(rss_n, 1),
        "rss_ratio": round(rss_n / rss_10, 3),
        "processes": len(per_process),
        **backends,
        "pg_backend_max_rss_mb_after_n": backends_n["pg_backend_max_rss_mb"],
        "pg_backend_max_rss_anon_mb_after_n": backends_n["pg_backend_max_rss_anon_mb"],
        "ten_tenants_run": mem_10,
        "all_tenants_run": mem_n,
    }


def rows(results: dict[str, Any]) -> list[Row]:
    mem = results["memory"]
    return [
        (
            "memory (app, all processes)",
            f"{mem['rss_mb_10']:.0f} MB after 10 tenants, {mem['rss_mb_n']:.0f} MB after {mem['tenants_n']}",
            f"largest PostgreSQL backend after spread: {mem['pg_backend_max_rss_mb']:.0f} MB RSS "
            f"({mem['pg_backend_max_rss_anon_mb']:.0f} MB anonymous); after all "
            f"{mem['tenants_n']}: {mem['pg_backend_max_rss_mb_after_n']:.0f} MB "
            f"({mem['pg_backend_max_rss_anon_mb_after_n']:.0f} MB)",
        )
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    mem = results["memory"]
    return [("memory rss_n / rss_10", f"{mem['rss_ratio']:.3f}", "≤ 1.10", mem["rss_ratio"] <= 1.10)]


# Before the spread: the app has served one tenant, then ten.
TEN_TENANTS = Step("memory", ten_tenants, serves=True)
# After the spread (its rate sizes the round-robin runs).
EVERY_TENANT = Step("memory", every_tenant, rows, goals, serves=True, requires=("spread",))
