"""The spread figure (``spread``): ``GET /users/{id}`` over 1 tenant and over T tenants,
alternating, after a measured cold start; the floor app's two shapes run the same pairs in
each round, and the pair is run again below saturation (see run.py's docstring)."""

from __future__ import annotations

from typing import Any

from common import Bench, Goal, Row, Step, Target, load, step
from reads import user_targets
from serving import Wrk

# wrk connections of the below-saturation spread pair (one per worker core is well below).
LIGHT_CONNECTIONS = 4

# (p99 ratio T / 1, the 1-tenant run, the T-tenant run)
SpreadRound = tuple[float, dict[str, Any], dict[str, Any]]


def spread_pair(
    wrk: Wrk, port: int, one: list[Target], many: list[Target], label: str, i: int
) -> SpreadRound:
    """One round of the spread figure on the server at ``port``: 1 tenant, then T."""
    single = wrk.measure(port, one, f"{label}: 1 tenant, round {i}")
    spread = wrk.measure(port, many, f"{label}: {len(many)} tenants, round {i}")
    return spread["p99_ms"] / single["p99_ms"], single, spread


def cold_start(bench: Bench, port: int, many: list[Target], label: str) -> list[dict[str, Any]]:
    """``--spread-warmup`` seconds over the T tenants, in slices of at most 5 s.

    Each PostgreSQL backend meets each of its tenants on its own: it loads that
    schema's catalog entries, and psycopg prepares a tenant's statement on its fifth
    run on a connection, which PostgreSQL plans generically after five more. Over
    1,000 tenants that takes tens of seconds of load (bench/RESULTS.md, eighth
    pass); the slices show how long, and the rounds then compare steady states.
    """
    slices: list[dict[str, Any]] = []
    elapsed, total = 0.0, bench.args.spread_warmup
    while elapsed < total:
        seconds = min(5.0, total - elapsed)
        run = bench.wrk.run(port, many, seconds, label=f"{label} warm-up")
        elapsed += run["seconds"]
        slices.append({"at_s": round(elapsed, 1), "rps": run["rps"], "p99_ms": run["p99_ms"]})
    if slices:
        step(
            f"  {label}: {len(many)} tenants from cold, {elapsed:.0f} s in slices: "
            + ", ".join(f"{s['rps']:.0f} req/s p99 {s['p99_ms']:.0f} ms" for s in slices)
        )
    return slices


def spread(bench: Bench) -> None:
    args, served, wrk = bench.args, bench.served, bench.wrk
    assert served is not None
    port, base_port = served.port, served.floor_port
    targets = user_targets(bench)
    get_one, many = targets.get_one, targets.spread
    # The floor app needs no token; the same hosts and ids, on its route of Atrium's shape.
    one_alone = [Target(t.host, t.token, f"/alone{t.path}") for t in get_one]
    many_alone = [Target(t.host, t.token, f"/alone{t.path}") for t in many]
    # Each server has served the one tenant for minutes by now, the T tenants not
    # yet: they are served first (floors first, Atrium last, right before the
    # rounds), so that the rounds compare steady states; the cold start is a
    # figure of its own.
    cold_alone = cold_start(bench, base_port, many_alone, "floor spread, alone")
    cold_floor = cold_start(bench, base_port, many, "floor spread")
    cold = cold_start(bench, port, many, "spread")
    # 1 tenant and T tenants alternate over --spread-rounds rounds, and the round with
    # the median p99 ratio is reported (with every round's ratio), as for the request
    # ratio: one p99 of a saturated run is the least stable figure of the bench.
    # The floor app runs the same pairs in each round: its ratio is what spreading
    # one single-row select over T schemas costs this machine, with no Atrium code.
    spread_rounds, floor_rounds, alone_rounds = [], [], []
    for i in range(1, args.spread_rounds + 1):
        spread_rounds.append(spread_pair(wrk, port, get_one, many, "spread", i))
        floor_rounds.append(spread_pair(wrk, base_port, get_one, many, "floor spread", i))
        alone_rounds.append(spread_pair(wrk, base_port, one_alone, many_alone, "floor spread, alone", i))
    served.stop_floor()
    atrium = spread_summary(spread_rounds)
    # The same pair below saturation: with every core busy, wrk's closed loop turns
    # lost throughput into queueing, so the p99 above mixes cost and queue; here
    # it is closer to the cost of one request.
    light = LIGHT_CONNECTIONS
    spread_1_light = wrk.measure(port, get_one, f"spread: 1 tenant, {light} connections", connections=light)
    spread_t_light = wrk.measure(
        port, many, f"spread: {len(many)} tenants, {light} connections", connections=light
    )
    floor, floor_alone = spread_summary(floor_rounds), spread_summary(alone_rounds)
    bench.results["spread"] = {
        "tenants": len(many),
        "warmup_s": args.spread_warmup,
        **atrium,
        "cold": cold_start_summary(cold, atrium),
        "floor": {**floor, "cold": cold_start_summary(cold_floor, floor)},
        "floor_alone": {**floor_alone, "cold": cold_start_summary(cold_alone, floor_alone)},
        "light": {
            "connections": LIGHT_CONNECTIONS,
            "t1": spread_1_light,
            "tn": spread_t_light,
            "p99_ratio": round(spread_t_light["p99_ms"] / spread_1_light["p99_ms"], 2),
        },
    }


def median_round(rounds: list[SpreadRound]) -> SpreadRound:
    return sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]


def spread_summary(rounds: list[SpreadRound]) -> dict[str, Any]:
    """The median round's runs and ratios, and every round's figures."""
    ratio, one, many = median_round(rounds)
    return {
        "t1": one,
        "tn": many,
        "p99_ratio": round(ratio, 2),
        "rps_ratio": round(many["rps"] / one["rps"], 2),
        "rounds": round_figures(rounds),
    }


def cold_start_summary(slices: list[dict[str, Any]], rounds: dict[str, Any]) -> dict[str, Any]:
    """The warm-up's slices, its first slice against the rounds' one tenant, and when the
    rate first reached 90 % of the median round's rate over the T tenants."""
    if not slices:
        return {"slices": [], "p99_ratio_first": None, "rps_ratio_first": None, "seconds_to_90pct": None}
    first, t1, tn = slices[0], rounds["t1"], rounds["tn"]
    reached = next((s["at_s"] for s in slices if s["rps"] >= 0.9 * tn["rps"]), None)
    return {
        "slices": slices,
        "p99_ratio_first": round(first["p99_ms"] / t1["p99_ms"], 2),
        "rps_ratio_first": round(first["rps"] / t1["rps"], 2),
        "seconds_to_90pct": reached,
    }


def round_figures(rounds: list[SpreadRound]) -> list[dict[str, float]]:
    return [
        {
            "p99_ratio": round(ratio, 2),
            "rps_ratio": round(many["rps"] / one["rps"], 2),
            "t1_p99_ms": one["p99_ms"],
            "tn_p99_ms": many["p99_ms"],
        }
        for ratio, one, many in rounds
    ]


def rows(results: dict[str, Any]) -> list[Row]:
    spread = results["spread"]
    light, cold = spread["light"], spread["cold"]

    def spread_row(label: str, summary: dict[str, Any]) -> Row:
        rounds = ", ".join(f"{r['p99_ratio']:.2f}" for r in summary["rounds"])
        return (
            label,
            f"1: {load(summary['t1'])}",
            f"{spread['tenants']}: {load(summary['tn'])}; p99 ratio {summary['p99_ratio']:.2f} (median of "
            f"rounds {rounds})",
        )

    return [
        spread_row(f"spread (1 vs {spread['tenants']} tenants)", spread),
        spread_row("  floor (bench/baseline_app.py)", spread["floor"]),
        spread_row("  floor, one select alone", spread["floor_alone"]),
        (
            f"  cold start ({spread['warmup_s']:g} s over {spread['tenants']} tenants before the rounds)",
            ", ".join(f"{s['rps']:.0f}" for s in cold["slices"]) + " req/s",
            "p99 "
            + ", ".join(f"{s['p99_ms']:.0f}" for s in cold["slices"])
            + " ms; "
            + (
                f"90 % of the rounds' rate after {cold['seconds_to_90pct']:g} s"
                if cold["seconds_to_90pct"] is not None
                else "below 90 % of the rounds' rate throughout"
            ),
        ),
        (
            f"  with {light['connections']} wrk connections",
            f"1: {load(light['t1'])}",
            f"{spread['tenants']}: {load(light['tn'])}; p99 ratio {light['p99_ratio']:.2f}",
        ),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    spread = results["spread"]
    return [
        ("spread p99_ratio", f"{spread['p99_ratio']:.2f}", "≤ 1.25", spread["p99_ratio"] <= 1.25),
        (
            "  floor: the raw-psycopg app, same run",
            f"{spread['floor']['p99_ratio']:.2f}",
            "(not a goal: what this machine allows)",
            None,
        ),
        (
            "  floor in the shape of Atrium's GET (one select, autocommit)",
            f"{spread['floor_alone']['p99_ratio']:.2f}",
            "(not a goal: what this machine allows that shape)",
            None,
        ),
        (
            f"  cold start: the first {spread['cold']['slices'][0]['at_s']:g} s over the T tenants"
            if spread["cold"]["slices"]
            else "  cold start",
            "—" if spread["cold"]["p99_ratio_first"] is None else f"{spread['cold']['p99_ratio_first']:.2f}",
            "(not a goal; see RESULTS.md)",
            None,
        ),
        (
            f"  same, {spread['light']['connections']} wrk connections",
            f"{spread['light']['p99_ratio']:.2f}",
            "(not a goal; see RESULTS.md)",
            None,
        ),
    ]


STEP = Step("spread", spread, rows, goals, serves=True)
