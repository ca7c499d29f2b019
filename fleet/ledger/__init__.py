"""The bet ledger: who owns bet state, and the only way to change it.

- :mod:`~fleet.ledger.records`: what is stored (records, projections, refusals) and their ids;
- :mod:`~fleet.ledger.ledger`: :class:`Ledger`, the one owner of those documents in the
  store: commit, project, read, repair;
- :mod:`~fleet.ledger.enforcer`: :class:`Enforcer`, the handoff rules; the only writer of a stage;
- :mod:`~fleet.ledger.verify`: the invariants, checked per bet;
- :mod:`~fleet.ledger.claims`: advisory leases on bets, and failed attempts.

A move walks down these floors: enforcer (rules) -> ledger (documents) -> store.
"""

from __future__ import annotations

from fleet.definitions.protocols import ProtocolStamp
from fleet.ledger.claims import Claims
from fleet.ledger.enforcer import Enforcer
from fleet.ledger.ledger import Ledger
from fleet.ledger.records import CREATE_KIND, Bet, Refusal, TransitionRecord
from fleet.ledger.verify import Violation

__all__ = [
    "CREATE_KIND",
    "Bet",
    "Claims",
    "Enforcer",
    "Ledger",
    "ProtocolStamp",
    "Refusal",
    "TransitionRecord",
    "Violation",
]
