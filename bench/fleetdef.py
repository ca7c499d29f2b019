"""The benchmark fleet: six gates in a line with instant handlers, and lookup handlers."""

from __future__ import annotations

import time
from typing import Any

from fleet.context import BetContext, Decision

STAGES = ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]
GATES = [f"gate{i}" for i in range(1, 7)]

PIPELINE: dict[str, Any] = {
    "name": "bench",
    "initial_stage": "s0",
    "creators": ["maker"],
    "stages": [
        *({"name": s, "terminal": s == STAGES[-1]} for s in STAGES),
        {"name": "looked_up", "terminal": True},
    ],
    "transitions": [
        *({"from": a, "to": b, "owner": g} for g, a, b in zip(GATES, STAGES, STAGES[1:], strict=False)),
        # A side exit used only by the lookup benchmark's agent.
        {"from": "s0", "to": "looked_up", "owner": "looker", "kind": "park"},
    ],
}


def _spec(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "group": "bench",
        "queue": "bench",
        "schedule": {"hours": [1]},
        "protocol_version": "1.0",
        "handler": f"bench.fleetdef:{handler}",
        **extra,
    }


CATALOGUE: dict[str, Any] = {
    "queues": ["bench", "ops"],
    "agents": [
        _spec("maker", "idle", creates=True),
        _spec("idler", "idle"),
        *(
            _spec(g, "instant", polls=[a], owns=[[a, b]], batch_size=1000, time_limit=600)
            for g, a, b in zip(GATES, STAGES, STAGES[1:], strict=False)
        ),
        _spec("looker", "lookups", polls=["s0"], owns=[["s0", "looked_up"]], batch_size=1000),
    ],
}
LOOKUP_S = 0.2


def idle(ctx: Any) -> None:
    """A sweep agent with nothing to do: the heartbeat's own overhead."""


def instant(ctx: BetContext) -> Decision:
    return Decision.move(ctx.options()[0], "pass")


def _lookup(n: int) -> int:
    time.sleep(LOOKUP_S)
    return n


def lookups(ctx: BetContext) -> Decision:
    if ctx.bet.fields.get("sequential"):
        results = [ctx.call(_lookup, n) for n in range(5)]
    else:
        results = ctx.gather(*(lambda n=n: ctx.call(_lookup, n) for n in range(5)))
    return Decision.move("looked_up", "pass", lookups=len(results))
