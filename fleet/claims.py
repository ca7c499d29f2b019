"""Advisory leases on bets, so two heartbeats rarely work on the same bet at once.

A claim only avoids duplicate work; correctness stays with the enforcer (a
duplicate advance loses the race there). Claims are keyed ``<bet>:<seq>:<n>``:
taking a claim is an *insert*, the one primitive that is atomic on FerretDB v1
too. A lease that expired (its holder died) is taken over by inserting ``n+1``;
when the bet moves on, its ``seq`` changes and claims start again at ``n=0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from fleet.constants import CLAIMS, FAILURES
from fleet.errors import LedgerUnavailable, first_line

#: Claims probed per bet and seq; past this many takeovers the bet is stuck and the audit reports it.
MAX_TAKEOVERS = 50


def claim_key(bet_id: str, seq: int, n: int) -> str:
    """The ``_id`` of the ``n``-th claim on a bet at ``seq``."""
    return f"{bet_id}:{seq}:{n}"


def _now() -> datetime:
    return datetime.now(UTC)


def _unavailable(exc: PyMongoError) -> LedgerUnavailable:
    return LedgerUnavailable(f"claims: {first_line(exc)}")


@dataclass
class Claims:
    """The claims one heartbeat holds; renew them while working, release them at the end."""

    db: Database[dict[str, Any]]
    agent: str
    heartbeat_id: str
    ttl: timedelta
    held: dict[str, str] = field(default_factory=dict)  # bet_id -> claim _id

    def try_claim(self, bet_id: str, seq: int) -> bool:
        """Take the lease on ``bet_id`` at ``seq`` unless someone holds a live one."""
        try:
            latest = self._latest(bet_id, seq)
            if latest and latest.get("released_at") is None and _expires(latest) > _now():
                return False
            n = int(latest["n"]) + 1 if latest else 0
            claim_id = claim_key(bet_id, seq, n)
            now = _now()
            self.db[CLAIMS].insert_one(
                {
                    "_id": claim_id,
                    "bet_id": bet_id,
                    "seq": seq,
                    "n": n,
                    "agent": self.agent,
                    "heartbeat_id": self.heartbeat_id,
                    "claimed_at": now,
                    "expires_at": now + self.ttl,
                    "released_at": None,
                }
            )
        except DuplicateKeyError:
            return False  # another heartbeat took it between our read and our insert
        except PyMongoError as exc:
            raise _unavailable(exc) from None
        self.held[bet_id] = claim_id
        return True

    def _latest(self, bet_id: str, seq: int) -> dict[str, Any] | None:
        """The newest claim on the bet at ``seq``, probing ``_id``s upwards.

        Lookups by string ``_id`` are the only ones FerretDB's SQLite backend
        pushes down; a filter on other fields would scan the whole collection.
        """
        latest = None
        for n in range(MAX_TAKEOVERS):
            doc = self.db[CLAIMS].find_one({"_id": claim_key(bet_id, seq, n)})
            if doc is None:
                return latest
            latest = doc
        return latest

    def renew(self) -> None:
        """Push every held lease's expiry forward (only the holder writes its own claim)."""
        expires = _now() + self.ttl
        try:
            for claim_id in list(self.held.values()):
                self.db[CLAIMS].update_one({"_id": claim_id}, {"$set": {"expires_at": expires}})
        except PyMongoError as exc:
            raise _unavailable(exc) from None

    def release(self, bet_id: str) -> None:
        """Give up the lease on one bet."""
        claim_id = self.held.pop(bet_id, None)
        if claim_id is None:
            return
        try:
            self.db[CLAIMS].update_one({"_id": claim_id}, {"$set": {"released_at": _now()}})
        except PyMongoError as exc:
            raise _unavailable(exc) from None

    def release_all(self) -> None:
        for bet_id in list(self.held):
            self.release(bet_id)


def _expires(claim: dict[str, Any]) -> datetime:
    expires = claim.get("expires_at")
    if not isinstance(expires, datetime):
        return datetime.min.replace(tzinfo=UTC)  # an unreadable lease is treated as expired
    return expires if expires.tzinfo else expires.replace(tzinfo=UTC)


def record_failure(
    db: Database[dict[str, Any]], bet_id: str, seq: int, agent: str, heartbeat_id: str, error: str
) -> None:
    """Count one failed attempt on a bet at ``seq`` (an insert: never lost to a race)."""
    doc = {
        "bet_id": bet_id,
        "seq": seq,
        "agent": agent,
        "heartbeat_id": heartbeat_id,
        "error": error[:500],
        "at": _now(),
    }
    try:
        db[FAILURES].insert_one(doc)
    except PyMongoError as exc:
        raise _unavailable(exc) from None


def failures_at(db: Database[dict[str, Any]], bet_id: str, seq: int) -> int:
    """Failed attempts on a bet since its last transition."""
    try:
        return int(db[FAILURES].count_documents({"bet_id": bet_id, "seq": seq}))
    except PyMongoError as exc:
        raise _unavailable(exc) from None
