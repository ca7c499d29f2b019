"""A small fleet for runtime tests: its pipeline, catalogue and handlers.

Handlers read their behaviour from the bet's own fields (``fail_calls``, ``crash``,
``sleep_s``, ``verdict``, ``store_down``), so each test states what should happen as data.
Sweep agents: ``maker`` creates a bet, ``caller`` makes an external call that always fails,
``sleeper`` hangs far past its 3 s time limit.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fleet.agents.context import BetContext, Decision, HeartbeatContext
from fleet.errors import ExternalCallFailed, LedgerUnavailable
from tests.fleetspec import agent_spec

PIPELINE: dict[str, Any] = {
    "name": "test-pipeline",
    "initial_stage": "new",
    "creators": ["maker"],
    "stages": [
        {"name": "new", "sla_hours": 1},
        {"name": "checked", "sla_hours": 1},
        {"name": "done", "terminal": True},
        {"name": "killed", "terminal": True},
    ],
    "transitions": [
        {"from": "new", "to": "checked", "owner": "checker"},
        {"from": "new", "to": "killed", "owner": "checker", "kind": "kill"},
        {"from": "checked", "to": "done", "owner": "finisher"},
    ],
}


def _spec(name: str, queue: str, handler: str, **extra: Any) -> dict[str, Any]:
    return agent_spec(name, queue, f"tests.runtime.fleetdef:{handler}", [1, 13], **extra)


CATALOGUE: dict[str, Any] = {
    "queues": ["alpha", "beta", "slow", "ops"],
    "agents": [
        _spec("maker", "beta", "make", creates=True),
        _spec(
            "checker",
            "alpha",
            "check",
            polls=["new"],
            owns=[["new", "checked"], ["new", "killed"]],
            batch_size=50,
            time_limit=20,
        ),
        _spec(
            "finisher",
            "beta",
            "finish",
            polls=["checked"],
            owns=[["checked", "done"]],
            batch_size=50,
        ),
        _spec("caller", "beta", "call_out"),
        _spec("sleeper", "slow", "linger", time_limit=3),
    ],
}

#: How long the sleeper's handler hangs (far past its time limit).
LINGER_S = 120

#: Highest number of lookups seen running at once (parallel-within-a-heartbeat check).
PEAK_LOOKUPS = {"now": 0, "peak": 0}
_LOCK = threading.Lock()


def lookup(source: str, bet: dict[str, Any]) -> str:
    """A fake external lookup: slow when asked, failing when asked."""
    with _LOCK:
        PEAK_LOOKUPS["now"] += 1
        PEAK_LOOKUPS["peak"] = max(PEAK_LOOKUPS["peak"], PEAK_LOOKUPS["now"])
    try:
        time.sleep(float(bet.get("lookup_s", 0)))  # the simulated call itself: work, not a wait
        if bet.get("fail_calls"):
            raise ExternalCallFailed(f"{source} is down")
        return source
    finally:
        with _LOCK:
            PEAK_LOOKUPS["now"] -= 1


def make(ctx: HeartbeatContext) -> None:
    ctx.create_bet({"idea": "made by a heartbeat"})


def call_out(ctx: HeartbeatContext) -> None:
    ctx.call(lookup, "crm", {"fail_calls": True})


def linger(ctx: HeartbeatContext) -> None:
    time.sleep(LINGER_S)  # a handler that hangs: the work under test, not a wait


def check(ctx: BetContext) -> Decision:
    fields = ctx.bet.fields
    if fields.get("crash"):
        raise ValueError("handler bug on this bet")
    if fields.get("store_down"):
        raise LedgerUnavailable("store down (as the bet asked)")
    time.sleep(float(fields.get("sleep_s", 0)))  # the simulated work itself, not a wait
    sources = ctx.gather(*(lambda s=s: ctx.call(lookup, s, fields) for s in ("a", "b", "c", "d", "e")))
    if fields.get("verdict") == "wait":
        return Decision.stay("not yet")
    target = "killed" if fields.get("verdict") == "kill" else "checked"
    return Decision.move(target, fields.get("verdict", "pass"), sources=sources)


def finish(ctx: BetContext) -> Decision:
    return Decision.move("done", "shipped")


#: The same fleet with a checker that takes two bets per heartbeat (starvation tests).
SMALL_BATCH: dict[str, Any] = {
    **CATALOGUE,
    "agents": [
        {**spec, "batch_size": 2} if spec["name"] == "checker" else spec for spec in CATALOGUE["agents"]
    ],
}

#: The same fleet with a checker that fans its bets out to bet tasks, at most 6 at once fleet-wide.
FAN_OUT: dict[str, Any] = {
    **CATALOGUE,
    "agents": [{**spec, "fan_out": 6} if spec["name"] == "checker" else spec for spec in CATALOGUE["agents"]],
}

#: The fan-out checker with a 15 s time limit: Celery's soft limit strikes at 12 s.
SHORT_FAN_OUT: dict[str, Any] = {
    **CATALOGUE,
    "agents": [
        {**spec, "fan_out": 6, "time_limit": 15} if spec["name"] == "checker" else spec
        for spec in CATALOGUE["agents"]
    ],
}
