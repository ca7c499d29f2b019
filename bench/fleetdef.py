"""The benchmark fleet: six gates in a line with instant handlers, and lookup handlers.

Also the builders every benchmark fleet shares (:mod:`bench.scalefleet` uses them): the
line of gates, its pipeline and one agent spec.
"""

from __future__ import annotations

import time
from typing import Any

from fleet.agents.context import BetContext, Decision

STAGES = ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]
GATES = [f"gate{i}" for i in range(1, 7)]
#: (gate, from stage, to stage): each gate moves the bets of its stage on to the next.
LINE = list(zip(GATES, STAGES, STAGES[1:], strict=False))


def line_pipeline(name: str, exit_stage: str, exit_owner: str) -> dict[str, Any]:
    """The stages passed in turn by the gates, and a terminal side exit from the first one."""
    return {
        "name": name,
        "initial_stage": STAGES[0],
        "creators": ["maker"],
        "stages": [
            *({"name": s, "terminal": s == STAGES[-1]} for s in STAGES),
            {"name": exit_stage, "terminal": True},
        ],
        "transitions": [
            *({"from": a, "to": b, "owner": g} for g, a, b in LINE),
            {"from": STAGES[0], "to": exit_stage, "owner": exit_owner, "kind": "park"},
        ],
    }


def agent_spec(module: str, name: str, handler: str, **extra: Any) -> dict[str, Any]:
    """One agent on the ``bench`` queue whose handler is ``module:handler``."""
    return {
        "name": name,
        "group": "bench",
        "queue": "bench",
        "schedule": {"hours": [1]},
        "protocol_version": "1.0",
        "handler": f"{module}:{handler}",
        **extra,
    }


def gate_specs(module: str, handler: str) -> list[dict[str, Any]]:
    """The gates, each taking up to 1000 bets a heartbeat (a backlog drains in one)."""
    return [
        agent_spec(module, g, handler, polls=[a], owns=[[a, b]], batch_size=1000, time_limit=600)
        for g, a, b in LINE
    ]


def _spec(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return agent_spec("bench.fleetdef", name, handler, **extra)


# The side exit is used only by the lookup benchmark's agent.
PIPELINE: dict[str, Any] = line_pipeline("bench", exit_stage="looked_up", exit_owner="looker")

CATALOGUE: dict[str, Any] = {
    "queues": ["bench", "ops"],
    "agents": [
        _spec("maker", "idle", creates=True),
        _spec("idler", "idle"),
        *gate_specs("bench.fleetdef", "instant"),
        _spec("looker", "lookups", polls=["s0"], owns=[["s0", "looked_up"]], batch_size=1000),
    ],
}
LOOKUP_S = 0.2


def idle(ctx: Any) -> None:
    """An agent with nothing to do: the heartbeat's own overhead (the benchmark makes the bets)."""


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
