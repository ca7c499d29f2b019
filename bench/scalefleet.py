"""The scale-out benchmark fleet: six gates in a line, and a drainer that fans its bets out.

Every handler spends ``io_s`` seconds (a bet field) waiting, as an LLM or HTTP call would.
The line, its pipeline and the agent specs are built as for :mod:`bench.fleetdef`.
"""

from __future__ import annotations

import time
from typing import Any

from bench.fleetdef import GATES, STAGES, agent_spec, gate_specs, idle, line_pipeline
from fleet.agents.context import BetContext, Decision

__all__ = ["CATALOGUE", "DRAIN_FAN_OUT", "GATES", "PIPELINE", "STAGES", "drain", "gate", "idle"]

#: Bets of the drainer running at once fleet-wide (at least the backlog: the workers are the limit).
DRAIN_FAN_OUT = 1000

PIPELINE: dict[str, Any] = line_pipeline("bench-scale", exit_stage="drained", exit_owner="drainer")


def _spec(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return agent_spec("bench.scalefleet", name, handler, **extra)


CATALOGUE: dict[str, Any] = {
    "queues": ["bench", "ops"],
    "agents": [
        _spec("maker", "idle", creates=True),
        *gate_specs("bench.scalefleet", "gate"),
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


def _wait(ctx: BetContext) -> None:
    time.sleep(float(ctx.bet.fields.get("io_s", 0.0)))  # the handler's I/O (an LLM or HTTP call)


def gate(ctx: BetContext) -> Decision:
    _wait(ctx)
    return Decision.move(ctx.options()[0], "pass")


def drain(ctx: BetContext) -> Decision:
    _wait(ctx)
    return Decision.move("drained", "pass")
