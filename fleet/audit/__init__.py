"""The CEO's audits: agent drift and stranded bets, as pure queries over the shared state.

Each audit reads the store (never writes) and returns :class:`Finding` objects:
what is wrong, which agent must act, and a *dedupe key* naming the condition.
:func:`file_findings` turns findings into board tasks (one per key, deduplicated
by the board) and closes the tasks whose condition is gone.

- **Drift** (:func:`drift_findings`): specs written for another protocol version
  (or for one that never existed); heartbeats that ran under other protocols than
  the current file, after the current file was first in use; specs naming stages
  or edges the pipeline no longer has; SLA overrides for stages that do not exist.
- **Refusal loops** (:func:`refusal_loop_findings`): an agent refused again and again for
  the same move, on one bet or on many, within the protocols' window; or bets held back
  from an agent for that reason (:mod:`fleet.ledger.holds`). One finding per (agent, move),
  assigned to the owner of the agent's spec.
- **Stranded bets** (:func:`stranded_findings`): bets past their stage's SLA; bets
  whose latest claim expired unreleased (its holder died); bets failing again and
  again; bets one agent keeps deferring; bets at a stage nobody polls or nothing
  leaves. Each finding names the last responsible agent and what it did.

Modules: :mod:`~fleet.audit.findings` (what a finding is, filing them),
:mod:`~fleet.audit.drift`, :mod:`~fleet.audit.stranded`, :mod:`~fleet.audit.loops`, and
:mod:`~fleet.audit.history` (which protocols touched a bet).

The documents read are the shared-state contracts written by the ledger, the
claims and the heartbeat runtime (collection names in :mod:`fleet.constants`).
"""

from __future__ import annotations

from fleet.audit.drift import drift_findings
from fleet.audit.findings import DEFAULT_AUDITOR, Finding, FindingKind, file_findings
from fleet.audit.history import protocol_versions_for_bet
from fleet.audit.loops import refusal_loop_findings
from fleet.audit.stranded import STUCK_OUTCOMES, BetView, bet_views, stranded_findings

__all__ = [
    "DEFAULT_AUDITOR",
    "STUCK_OUTCOMES",
    "BetView",
    "Finding",
    "FindingKind",
    "bet_views",
    "drift_findings",
    "file_findings",
    "protocol_versions_for_bet",
    "refusal_loop_findings",
    "stranded_findings",
]
