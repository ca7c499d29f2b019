"""The scale-out benchmark fleet: six gates in a line, and a drainer that fans its bets out.

Every handler spends ``io_s`` seconds (a bet field) waiting, as an LLM or HTTP call would.
"""

from __future__ import annotations

import time
from typing import Any

from fleet.context import BetContext, Decision

STAGES = ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]
GATES = [f"gate{i}" for i in range(1, 7)]
#: Bets of the drainer running at once fleet-wide (at least the backlog: the workers are the limit).
DRAIN_FAN_OUT = 1000

PIPELINE: dict[str, Any] = {
    "name": "bench-scale",
    "initial_stage": "s0",
    "creators": ["maker"],
    "stages": [
        *({"name": s, "terminal": s == STAGES[-1]} for s in STAGES),
        {"name": "drained", "terminal": True},
    ],
    "transitions": [
        *({"from": a, "to": b, "owner": g} for g, a, b in zip(GATES, STAGES, STAGES[1:], strict=False)),
        {"from": "s0", "to": "drained", "owner": "drainer", "kind": "park"},
    ],
}


def _spec(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "group": "bench",
        "queue": "bench",
        "schedule": {"hours": [1]},
        "protocol_version": "1.0",
        "handler": f"bench.scalefleet:{handler}",
        **extra,
    }


CATALOGUE: dict[str, Any] = {
    "queues": ["bench", "ops"],
    "agents": [
        _spec("maker", "idle", creates=True),
        *(
            _spec(g, "gate", polls=[a], owns=[[a, b]], batch_size=1000, time_limit=600)
            for g, a, b in zip(GATES, STAGES, STAGES[1:], strict=False)
        ),
        # Only the drain benchmark runs it; wakes would start it on every bet arriving at s0.
        _spec(
            "drainer",
            "drain",
            polls=["s0"],
            owns=[["s0", "drained"]],
            batch_size=1000,
            fan_out=DRAIN_FAN_OUT,
            wake=False,
        ),  # fmt: skip
    ],
}


def idle(ctx: Any) -> None:
    """The creator: bets are created by the benchmark itself."""


def _wait(ctx: BetContext) -> None:
    time.sleep(float(ctx.bet.fields.get("io_s", 0.0)))  # the handler's I/O (an LLM or HTTP call)


def gate(ctx: BetContext) -> Decision:
    _wait(ctx)
    return Decision.move(ctx.options()[0], "pass")


def drain(ctx: BetContext) -> Decision:
    _wait(ctx)
    return Decision.move("drained", "pass")
