"""A fleet that is not the default one: hiring candidates, with its own words everywhere.

Loaded by the tests through ``FLEET_PIPELINE`` and ``FLEET_CATALOGUE`` exactly as a user
would load their own; nothing in it shares a stage, agent, queue or field with the default.
"""

from __future__ import annotations

from typing import Any

from fleet.agents.context import BetContext, Decision, HeartbeatContext
from tests.fleetspec import agent_spec

PIPELINE: dict[str, Any] = {
    "name": "hiring",
    "noun": "candidate",
    "seed_fields": {"name": "applicant {n}"},
    "initial_stage": "applied",
    "creators": ["recruiter"],
    "stages": [
        {"name": "applied", "sla_hours": 48},
        {"name": "screened", "sla_hours": 72},
        {"name": "on_hold", "sla_hours": 240},
        {"name": "hired", "terminal": True},
        {"name": "rejected", "terminal": True},
    ],
    "transitions": [
        {"from": "applied", "to": "screened", "owner": "screener"},
        {"from": "applied", "to": "rejected", "owner": "screener", "kind": "kill"},
        {"from": "applied", "to": "on_hold", "owner": "screener", "kind": "park"},
        {"from": "screened", "to": "hired", "owner": "interviewer"},
        {"from": "screened", "to": "rejected", "owner": "interviewer", "kind": "kill"},
        {"from": "on_hold", "to": "applied", "owner": "interviewer", "kind": "revive"},
    ],
}


def _spec(name: str, queue: str, handler: str, **extra: Any) -> dict[str, Any]:
    return agent_spec(name, queue, f"tests.cli.hiring:{handler}", [9, 15], **extra)


CATALOGUE: dict[str, Any] = {
    "queues": ["intake", "review", "ops"],
    "agents": [
        _spec("recruiter", "intake", "recruit", creates=True),
        _spec(
            "screener",
            "review",
            "screen",
            polls=["applied"],
            owns=[["applied", "screened"], ["applied", "rejected"], ["applied", "on_hold"]],
        ),
        _spec(
            "interviewer",
            "review",
            "interview",
            polls=["screened", "on_hold"],
            owns=[["screened", "hired"], ["screened", "rejected"], ["on_hold", "applied"]],
        ),
    ],
}


def recruit(ctx: HeartbeatContext) -> None:
    ctx.create_bet({"name": "walk-in applicant"})


def screen(ctx: BetContext) -> Decision:
    verdict = ctx.bet.fields.get("verdict", "pass")
    targets = {"pass": "screened", "no": "rejected", "later": "on_hold"}
    return Decision.move(targets[verdict], verdict)


def interview(ctx: BetContext) -> Decision:
    if ctx.bet.stage == "on_hold":
        return Decision.move("applied", "reconsidered")
    return Decision.move("hired", "offer accepted")
