"""The identity area's read figures (``requests``): ``GET /users/{id}`` against the floor
app, alternating over RATIO_ROUNDS rounds, and ``GET /users?limit=50``.

Not ``requests.py``: bench/ is on the import path of the bench and of the floor app, where
that name would shadow the HTTP library of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common import RATIO_ROUNDS, Bench, Goal, Row, Step, Target, load, step
from serving import Post


@dataclass(frozen=True, slots=True)
class UserTargets:
    """The targets the read, spread and memory figures share: made once, so that every
    figure presents the same tokens (verified tokens are remembered per process)."""

    get_one: list[Target]
    list_one: list[Target]
    spread: list[Target]
    everyone: list[Target]


def user_targets(bench: Bench) -> UserTargets:
    made = bench.state.get("user_targets")
    if made is None:
        args, first = bench.args, bench.tenants[0]
        spread = bench.targets(bench.tenants[: args.spread_tenants], lambda t: f"/users/{t.owner_id}")
        made = bench.state["user_targets"] = UserTargets(
            get_one=bench.targets([first], lambda t: f"/users/{t.owner_id}"),
            list_one=bench.targets([first], lambda _t: "/users?limit=50"),
            spread=spread,
            everyone=spread
            + bench.targets(bench.tenants[args.spread_tenants :], lambda t: f"/users/{t.owner_id}"),
        )
    return made


Alternated = tuple[float, dict[str, Any], dict[str, Any], list[float]]


def alternate(
    bench: Bench,
    app: list[Target],
    floor: list[Target],
    label: str,
    floor_label: str,
    post: Post | None = None,
) -> Alternated:
    """RATIO_ROUNDS rounds of the app, then the floor app, on their targets; the round with the
    median ratio of request rates (app / floor), its two runs, and every round's ratio.

    The machine is shared and noisy: alternating, and taking the round with the median
    ratio, makes a burst of outside load hit one round, not one side.
    """
    (alternated,) = alternate_floors(bench, app, label, [(floor, floor_label)], post)
    return alternated


def alternate_floors(
    bench: Bench,
    app: list[Target],
    label: str,
    floors: list[tuple[list[Target], str]],
    post: Post | None = None,
) -> list[Alternated]:
    """``alternate`` against several floors at once: each round runs the app, then every
    floor; each floor's answer is as ``alternate``'s, its ratios to the app in the same round."""
    served, wrk = bench.served, bench.wrk
    assert served is not None
    rounds: list[list[tuple[float, dict[str, Any], dict[str, Any]]]] = [[] for _ in floors]
    for i in range(1, RATIO_ROUNDS + 1):
        app_run = wrk.measure(served.port, app, f"{label}, round {i}", post=post)
        for kept, (targets, floor_label) in zip(rounds, floors, strict=True):
            floor_run = wrk.measure(served.floor_port, targets, f"{floor_label}, round {i}", post=post)
            kept.append((app_run["rps"] / floor_run["rps"], app_run, floor_run))
    answers = []
    for kept in rounds:
        kept.sort(key=lambda r: r[0])
        ratio, app_run, floor_run = kept[len(kept) // 2]
        answers.append((ratio, app_run, floor_run, [round(r[0], 2) for r in kept]))
    return answers


def requests(bench: Bench) -> None:
    args, served, wrk = bench.args, bench.served, bench.wrk
    assert served is not None
    first = bench.tenants[0]
    bench.seed_users(first, 50)
    targets = user_targets(bench)
    get_one, list_one = targets.get_one, targets.list_one
    for target in (get_one[0], list_one[0]):
        served.check(served.port, target)
    served.check(served.floor_port, get_one[0])
    step(
        f"get_user against the raw-psycopg floor (bench/baseline_app.py, same uvicorn options, "
        f"served beside it on port {served.floor_port}), alternating, {RATIO_ROUNDS} rounds"
    )
    ratio, get_user, baseline, ratio_rounds = alternate(
        bench, get_one, get_one, "get_user (1 tenant)", "baseline (raw psycopg, 1 tenant)"
    )
    list_users = wrk.measure(served.port, list_one, "list_users (limit=50)")
    bench.results["requests"] = {
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
        "redis": bool(args.redis_url),
        "get_user": get_user,
        "list_users": list_users,
        "baseline": baseline,
        "ratio": round(ratio, 2),
        "ratio_rounds": ratio_rounds,
    }


def rows(results: dict[str, Any]) -> list[Row]:
    req = results["requests"]
    return [
        (
            "get_user",
            load(req["get_user"]),
            f"baseline {load(req['baseline'])}; ratio {req['ratio']:.2f} (median of rounds "
            f"{', '.join(f'{r:.2f}' for r in req['ratio_rounds'])})",
        ),
        ("list_users (limit 50)", load(req["list_users"]), ""),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    req = results["requests"]
    return [("requests ratio", f"{req['ratio']:.2f}", "≥ 0.6", req["ratio"] >= 0.6)]


STEP = Step("requests", requests, rows, goals, serves=True)
