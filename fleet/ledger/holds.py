"""Holds: bets an agent is no longer offered after it was refused on them too often.

An agent that keeps asking for a move it may not make (a refusal loop) would otherwise
get the same bets at every heartbeat and fill its whole batch with them. Once one agent
has been refused on one bet at one seq more than the protocols' ``refusal_loop_threshold``
times within ``refusal_loop_window_h``, the runtime records a hold, keyed
``<agent>:<bet>:<seq>`` (an insert: idempotent under races). A hold applies while the
agent's spec fingerprint (spec + handler source, :func:`fleet.definitions.catalogue.spec_fingerprint`)
and the protocols hash are those it was taken under: a fix to either offers the bet again.
A bet that moves on leaves its holds behind (they name the old seq); retention prunes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fleet.constants import HOLDS, REFUSALS
from fleet.store import translated

Doc = dict[str, Any]


def hold_key(agent: str, bet_id: str, seq: int) -> str:
    return f"{agent}:{bet_id}:{seq}"


@dataclass(frozen=True)
class Hold:
    """One bet not offered to one agent, and why."""

    agent: str
    bet_id: str
    seq: int
    from_stage: str | None
    to_stage: str
    refusals: int
    reason: str
    fingerprint: str
    protocol_hash: str
    at: datetime

    def applies(self, fingerprint: str, protocol_hash: str) -> bool:
        """Whether the hold still stands: nothing it was taken under has changed."""
        return (self.fingerprint, self.protocol_hash) == (fingerprint, protocol_hash)

    def doc(self) -> Doc:
        return {"_id": hold_key(self.agent, self.bet_id, self.seq), **self.__dict__}


def _parse(doc: Doc) -> Hold | None:
    try:
        return Hold(**{name: doc[name] for name in Hold.__dataclass_fields__})
    except (KeyError, TypeError):
        return None  # not a hold fleet wrote: ignored (and so never holds anything back)


class Holds:
    """Reading and taking holds."""

    def __init__(self, db: Database[Doc]) -> None:
        self.db = db

    def recent_refusals(self, agent: str, bet_id: str, seq: int, since: datetime) -> int:
        """How often ``agent`` was refused on the bet at ``seq`` since ``since``."""
        query = {"agent": agent, "bet_id": bet_id, "expected_seq": seq, "at": {"$gte": since}}
        with translated("holds: counting refusals"):
            return int(self.db[REFUSALS].count_documents(query))

    def take(self, hold: Hold) -> bool:
        """Record ``hold``; False if it already stands. A stale hold of the same key (taken
        under another spec or protocols) is replaced: holds are advisory, races are harmless."""
        doc = hold.doc()
        with translated("holds: taking a hold"):
            try:
                self.db[HOLDS].insert_one(doc)
                return True
            except DuplicateKeyError:
                existing = self.db[HOLDS].find_one({"_id": doc["_id"]})
                old = None if existing is None else _parse(existing)
                if old is not None and old.applies(hold.fingerprint, hold.protocol_hash):
                    return False
                self.db[HOLDS].replace_one({"_id": doc["_id"]}, doc, upsert=True)
                return True

    def of_agent(self, agent: str) -> list[Hold]:
        with translated("holds: reading"):
            return _parsed(self.db[HOLDS].find({"agent": agent}))

    def of_bet(self, bet_id: str) -> list[Hold]:
        with translated("holds: reading"):
            return _parsed(self.db[HOLDS].find({"bet_id": bet_id}))

    def every(self) -> list[Hold]:
        with translated("holds: reading"):
            return _parsed(self.db[HOLDS].find({}))


def _parsed(docs: Any) -> list[Hold]:
    return [hold for hold in map(_parse, docs) if hold is not None]


def window_start(now: datetime, hours: float) -> datetime:
    return now - timedelta(hours=hours)
