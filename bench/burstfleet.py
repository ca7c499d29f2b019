"""The burst benchmark fleet: six gates in a line taking 10 bets a heartbeat, as real gates do.

The first gate waits ``io_s`` seconds per bet (a bet field), as an LLM or HTTP call would;
the gates after it pass bets on at once, so the burst at the first stage is the work measured.
"""

from __future__ import annotations

import time
from typing import Any

from bench.fleetdef import LINE, STAGES, agent_spec, idle, line_pipeline
from fleet.agents.context import BetContext, Decision

__all__ = ["BATCH", "CATALOGUE", "PIPELINE", "gate", "idle"]

#: Bets one gate heartbeat claims (the default catalogue's gates take 10).
BATCH = 10

PIPELINE: dict[str, Any] = line_pipeline("bench-burst", exit_stage="parked", exit_owner="gate1")
PIPELINE["transitions"] = [t for t in PIPELINE["transitions"] if t["to"] != "parked"]
PIPELINE["stages"] = [s for s in PIPELINE["stages"] if s["name"] != "parked"]

CATALOGUE: dict[str, Any] = {
    "queues": ["bench", "ops"],
    "agents": [
        agent_spec("bench.burstfleet", "maker", "idle", creates=True),
        *(
            agent_spec(
                "bench.burstfleet", g, "gate", polls=[a], owns=[[a, b]], batch_size=BATCH, time_limit=600
            )
            for g, a, b in LINE
        ),
    ],
}


def gate(ctx: BetContext) -> Decision:
    if ctx.bet.stage == STAGES[0]:
        time.sleep(float(ctx.bet.fields.get("io_s", 0.0)))  # the handler's I/O (an LLM or HTTP call)
    return Decision.move(ctx.options()[0], "pass")
