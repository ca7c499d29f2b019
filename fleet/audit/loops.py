"""The refusal-loop audit: agents that keep asking for a move they may not make.

An agent refused again and again for the same move, on one bet or on many, within
the protocols' window; or bets held back from an agent for that reason
(:mod:`fleet.ledger.holds`). One finding per (agent, move), assigned to the owner of
the agent's spec.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo.database import Database

from fleet.audit.common import Doc, find
from fleet.audit.findings import DEFAULT_AUDITOR, Finding, FindingKind
from fleet.constants import REFUSALS
from fleet.definitions.catalogue import Registry, spec_fingerprint
from fleet.definitions.protocols import LoadedProtocols
from fleet.ledger.holds import Hold, Holds
from fleet.store import reading

#: Bets named in one refusal-loop task (the rest are counted).
LOOP_BETS_SHOWN = 20


@dataclass
class _Loop:
    """Refusals of one agent for one move within the window, and the holds they caused."""

    agent: str
    from_stage: str | None
    to_stage: str
    per_bet: Counter[str] = field(default_factory=Counter)
    reason: str = ""
    held: list[str] = field(default_factory=list)


def refusal_loop_findings(
    registry: Registry,
    loaded: LoadedProtocols,
    db: Database[Doc],
    now: datetime,
    *,
    auditor: str = DEFAULT_AUDITOR,
) -> list[Finding]:
    """Agents that keep asking for a move they may not make (see the module docstring)."""
    policy = loaded.protocols.escalation
    since = now - timedelta(hours=policy.refusal_loop_window_h)
    loops: dict[tuple[str, str | None, str], _Loop] = {}
    fields = ["agent", "bet_id", "from_stage", "to_stage", "reason"]
    for doc in find(db, REFUSALS, {"at": {"$gte": since}}, fields):
        if doc.get("reason") == "stale bet (lost race)" or not isinstance(doc.get("agent"), str):
            continue  # a lost race is not a loop
        loop = _loop_of(loops, doc["agent"], doc.get("from_stage"), str(doc.get("to_stage")))
        loop.per_bet[str(doc.get("bet_id"))] += 1
        loop.reason = str(doc.get("reason") or loop.reason)
    for hold in _standing_holds(registry, loaded, db):
        _loop_of(loops, hold.agent, hold.from_stage, hold.to_stage).held.append(hold.bet_id)
    threshold = policy.refusal_loop_threshold
    return [
        _loop_finding(registry, loop, policy.refusal_loop_window_h, auditor)
        for loop in loops.values()
        if loop.held or max(loop.per_bet.values(), default=0) > threshold or len(loop.per_bet) > threshold
    ]


def _loop_of(loops: dict[tuple[str, str | None, str], _Loop], agent: str, src: str | None, dst: str) -> _Loop:
    return loops.setdefault((agent, src, dst), _Loop(agent, src, dst))


def _standing_holds(registry: Registry, loaded: LoadedProtocols, db: Database[Doc]) -> list[Hold]:
    with reading("holds"):
        holds = Holds(db).every()
    fingerprints = {spec.name: spec_fingerprint(spec) for spec in registry}
    return [h for h in holds if h.agent in fingerprints and h.applies(fingerprints[h.agent], loaded.hash)]


def _loop_finding(registry: Registry, loop: _Loop, window_h: float, auditor: str) -> Finding:
    spec = registry.get(loop.agent)
    owner = spec.owner if spec is not None else auditor
    move = f"{loop.from_stage or '(new)'} -> {loop.to_stage}"
    allowed = [
        {"to_stage": edge.dest, "owner": edge.owner, "kind": str(edge.kind)}
        for edge in (registry.pipeline.edges_from(loop.from_stage) if loop.from_stage else [])
    ]
    own = [a["to_stage"] for a in allowed if a["owner"] == loop.agent]
    bets = sorted(set(loop.per_bet) | set(loop.held))
    refusals = sum(loop.per_bet.values())
    return Finding(
        kind=FindingKind.REFUSAL_LOOP,
        agent=owner,
        dedupe_key=f"refusal-loop:{loop.agent}:{loop.from_stage}->{loop.to_stage}",
        title=(
            f"{loop.agent} keeps trying {move}, which it may not make ({loop.reason}): "
            f"{refusals} refusal(s) on {len(bets)} item(s) in the last {window_h:g} h, "
            f"{len(loop.held)} held back"
        ),
        detail={
            "agent": loop.agent,
            "move": move,
            "reason": loop.reason,
            "refusals": refusals,
            "bets": bets[:LOOP_BETS_SHOWN],
            "bet_count": len(bets),
            "held": sorted(loop.held)[:LOOP_BETS_SHOWN],
            "allowed_moves": allowed,
            "agent_may_move_to": own,
            "fix": "fix the agent's handler or spec (held items are offered again once either changes)",
        },
    )
