"""The write figure (``write``, issue 17): ``POST /user-groups`` of a small row with the
owner's token (authentication, the ``write`` permission, the row owned by the caller),
against the floor app's ``POST /user-groups`` (the same INSERT and commit by raw psycopg),
alternating over RATIO_ROUNDS rounds as the get_user ratio does.

Beside it, the same rounds against the contract floor (baseline_app's
``POST /contract/user-groups``: the token, the caller check, the ``Idempotency-Key``
claim, the row and the key's row, by hand with Atrium's own statements and round trips):
what the contract costs by itself, apart from what Atrium's stack adds. Its ratio is a
figure, not a goal.

Every request writes a row of its own (bench/targets.lua makes each body unique). Whether
each also carries an ``Idempotency-Key`` is ``--idempotency-key``: ``auto`` sends one when
the app replays a repeated key (``Idempotent-Replayed``), which a build without that
support does not, so the figure runs on either.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from common import RATIO_ROUNDS, Bench, BenchError, Goal, Row, Step, Target, beside_floor, load, step
from reads import alternate_floors
from serving import Post

GROUP_BODY = '{"name": "bench group %s"}'


def replays_idempotency_keys(port: int, target: Target) -> bool:
    """Whether the app at ``port`` answers a repeated ``Idempotency-Key`` as a replay."""
    headers = {
        "Host": target.host,
        "Authorization": f"Bearer {target.token}",
        "Idempotency-Key": f"bench-probe-{uuid.uuid4().hex}",
    }
    body = {"name": "bench idempotency probe"}
    answers = [
        httpx.post(f"http://127.0.0.1:{port}{target.path}", headers=headers, json=body, timeout=10)
        for _ in range(2)
    ]
    if answers[0].status_code != 201:
        raise BenchError(f"POST {target.path} answered {answers[0].status_code}: {answers[0].text[:300]}")
    return answers[1].headers.get("idempotent-replayed", "").lower() == "true"


def write(bench: Bench) -> None:
    args, served = bench.args, bench.served
    assert served is not None
    targets = bench.targets([bench.tenants[0]], lambda _t: "/user-groups")
    supported = replays_idempotency_keys(served.port, targets[0])
    keyed = {"on": True, "off": False, "auto": supported}[args.idempotency_key]
    post = Post(GROUP_BODY, idempotency=keyed)
    step(
        f"write: POST /user-groups against the floor's INSERT and commit, alternating, {RATIO_ROUNDS} "
        f"rounds; Idempotency-Key {'sent' if keyed else 'not sent'} (the app "
        f"{'replays' if supported else 'does not replay'} a repeated key)"
    )
    floors = [(targets, "write floor (raw psycopg INSERT)")]
    if keyed:
        contract = bench.targets([bench.tenants[0]], lambda _t: "/contract/user-groups")
        floors.append((contract, "write contract floor (the same statements by hand)"))
    (ratio, app_run, floor_run, ratio_rounds), *by_hand = alternate_floors(
        bench, targets, "write (POST /user-groups)", floors, post
    )
    result = {
        "route": "POST /user-groups",
        "idempotency_key": keyed,
        "idempotency_supported": supported,
        **beside_floor(app_run, floor_run, ratio, ratio_rounds),
    }
    if by_hand:
        ((contract_ratio, app_beside, contract_run, contract_rounds),) = by_hand
        result["contract_floor"] = beside_floor(app_beside, contract_run, contract_ratio, contract_rounds)
    bench.results["write"] = result


def _beside(label: str, figure: dict[str, Any], floor: str) -> Row:
    return (
        label,
        load(figure["app"]),
        f"{floor} {load(figure['floor'])}; ratio {figure['ratio']:.2f} (median of rounds "
        f"{', '.join(f'{r:.2f}' for r in figure['ratio_rounds'])})"
        + (f"; CPU ratio {figure['cpu_ratio']:.2f}" if figure.get("cpu_ratio") else ""),
    )


def rows(results: dict[str, Any]) -> list[Row]:
    w = results["write"]
    keyed = ", Idempotency-Key" if w["idempotency_key"] else ""
    contract = w.get("contract_floor")
    return [
        _beside(f"write ({w['route']}{keyed})", w, "floor"),
        *([_beside("write beside the contract by hand", contract, "contract floor")] if contract else []),
    ]


def goals(results: dict[str, Any]) -> list[Goal]:
    w = results["write"]
    return [("write ratio", f"{w['ratio']:.2f}", "≥ 0.6", w["ratio"] >= 0.6)]


STEP = Step("write", write, rows, goals, serves=True)
