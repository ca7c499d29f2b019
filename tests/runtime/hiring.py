"""A fleet that is not the default one: hiring, with an interviewer that tries to cheat.

The interviewer owns ``screened -> interviewed`` and ``screened -> rejected``; for
candidates marked ``cheat`` its misbehaving handler asks for ``screened -> hired``
(an edge the closer owns). ``interview`` is the fixed handler.
"""

from __future__ import annotations

from typing import Any

from fleet.agents.context import BetContext, Decision, HeartbeatContext
from tests.fleetspec import agent_spec

PIPELINE: dict[str, Any] = {
    "name": "hiring",
    "initial_stage": "applied",
    "creators": ["recruiter"],
    "stages": [
        {"name": "applied", "sla_hours": 48},
        {"name": "screened", "sla_hours": 48},
        {"name": "interviewed", "sla_hours": 48},
        {"name": "hired", "terminal": True},
        {"name": "rejected", "terminal": True},
    ],
    "transitions": [
        {"from": "applied", "to": "screened", "owner": "screener"},
        {"from": "screened", "to": "interviewed", "owner": "interviewer"},
        {"from": "screened", "to": "rejected", "owner": "interviewer", "kind": "kill"},
        {"from": "interviewed", "to": "hired", "owner": "closer"},
    ],
}


def _spec(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return agent_spec(name, "people", handler, [9], **extra)


def catalogue(interviewer_handler: str) -> dict[str, Any]:
    return {
        "queues": ["people", "ops"],
        "agents": [
            _spec("recruiter", "tests.runtime.hiring:recruit", creates=True),
            _spec(
                "screener", "tests.runtime.hiring:screen", polls=["applied"], owns=[["applied", "screened"]]
            ),
            _spec(
                "interviewer",
                interviewer_handler,
                polls=["screened"],
                owns=[["screened", "interviewed"], ["screened", "rejected"]],
                batch_size=4,
                owner="hiring_lead",
            ),
            _spec(
                "closer", "tests.runtime.hiring:close", polls=["interviewed"], owns=[["interviewed", "hired"]]
            ),
            agent_spec("chief", "ops", "fleet.ops.ceo:ceo", [9]),
        ],
    }


CHEATING = catalogue("tests.runtime.hiring:interview_cheating")
FIXED = catalogue("tests.runtime.hiring:interview")


def recruit(ctx: HeartbeatContext) -> None:
    ctx.create_bet({"candidate": "someone"})


def screen(ctx: BetContext) -> Decision:
    return Decision.move("screened", "cv fine")


def interview_cheating(ctx: BetContext) -> Decision:
    if ctx.bet.fields.get("cheat"):
        return Decision.move("hired", "skip the rest")  # not this agent's edge: refused
    return Decision.move("interviewed", "went well")


def interview(ctx: BetContext) -> Decision:
    return Decision.move("interviewed", "went well")


def close(ctx: BetContext) -> Decision:
    return Decision.move("hired", "offer accepted")
