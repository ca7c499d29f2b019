"""Advisory leases on bets, so two heartbeats rarely work on the same bet at once.

A claim only avoids duplicate work; correctness stays with the enforcer (a
duplicate advance loses the race there). Claims are keyed ``<bet>:<seq>:<n>``:
taking a claim is an *insert*, the one primitive that is atomic on FerretDB v1
too. A lease that expired (its holder died) is taken over by inserting ``n+1``;
when the bet moves on, its ``seq`` changes and claims start again at ``n=0``.

The newest claim of a (bet, seq) is found by a galloping search over ``n`` (probe
0, 1, 3, 7, ... until a miss, then bisect): O(log n) point reads by ``_id``, the only
lookup FerretDB answers from an index, with no cap on how often a bet is tried.
Claims of one (bet, seq) form a gap-free chain because they are only ever inserted
one after the other and pruned whole (:mod:`fleet.ops.retention`).

Times are the store's (:mod:`fleet.store.clock`), so a worker with a skewed clock
neither takes over a live lease early nor holds a dead one late.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fleet.constants import CLAIMS, FAILURES
from fleet.store import StoreClock, clock, translated

Doc = dict[str, Any]


def claim_key(bet_id: str, seq: int, n: int) -> str:
    """The ``_id`` of the ``n``-th claim on a bet at ``seq``."""
    return f"{bet_id}:{seq}:{n}"


@dataclass
class Claims:
    """The claims one heartbeat holds; renew them while working, release them at the end.

    A heartbeat retried or redelivered under the same ``heartbeat_id`` (Celery's task id)
    takes its own live leases back instead of waiting for them to expire.
    """

    db: Database[Doc]
    agent: str
    heartbeat_id: str
    ttl: timedelta
    held: dict[str, str] = field(default_factory=dict)  # bet_id -> claim _id
    reads: int = 0  # store reads spent finding claim heads (the bench reports it)

    @property
    def _clock(self) -> StoreClock:
        return clock(self.db)

    def try_claim(self, bet_id: str, seq: int) -> bool:
        """Take the lease on ``bet_id`` at ``seq`` unless someone else holds a live one."""
        with translated("claims: taking a lease"):
            latest = self.latest(bet_id, seq)
            now = self._clock.now()
            if latest is not None and latest.get("released_at") is None and _expires(latest) > now:
                if latest.get("heartbeat_id") != self.heartbeat_id:
                    return False
                self.held[bet_id] = str(latest["_id"])  # our own, from an earlier run of this heartbeat
                return True
            n = int(latest["n"]) + 1 if latest is not None else 0
            claim_id = claim_key(bet_id, seq, n)
            try:
                self.db[CLAIMS].insert_one(self._doc(claim_id, bet_id, seq, n, now))
            except DuplicateKeyError:
                return False  # another heartbeat took it between our read and our insert
        self.held[bet_id] = claim_id
        return True

    def _doc(self, claim_id: str, bet_id: str, seq: int, n: int, now: datetime) -> Doc:
        return {
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

    def latest(self, bet_id: str, seq: int) -> Doc | None:
        """The newest claim on the bet at ``seq`` (galloping search over ``n``), or None."""
        if (first := self._probe(bet_id, seq, 0)) is None:
            return None
        low, found, high = 0, first, 1
        while (doc := self._probe(bet_id, seq, high)) is not None:  # gallop: 1, 3, 7, 15, ...
            low, found, high = high, doc, high * 2 + 1
        while high - low > 1:  # bisect: claim ``low`` exists, claim ``high`` does not
            middle = (low + high) // 2
            if (doc := self._probe(bet_id, seq, middle)) is not None:
                low, found = middle, doc
            else:
                high = middle
        return found

    def _probe(self, bet_id: str, seq: int, n: int) -> Doc | None:
        self.reads += 1
        return self.db[CLAIMS].find_one({"_id": claim_key(bet_id, seq, n)})

    def renew(self) -> None:
        """Push every held lease's expiry forward (only the holder writes its own claim)."""
        expires = self._clock.now() + self.ttl
        with translated("claims: renewing leases"):
            for claim_id in list(self.held.values()):
                self.db[CLAIMS].update_one({"_id": claim_id}, {"$set": {"expires_at": expires}})

    def release(self, bet_id: str) -> None:
        """Give up the lease on one bet."""
        claim_id = self.held.pop(bet_id, None)
        if claim_id is None:
            return
        with translated("claims: releasing a lease"):
            self.db[CLAIMS].update_one({"_id": claim_id}, {"$set": {"released_at": self._clock.now()}})

    def release_all(self) -> None:
        for bet_id in list(self.held):
            self.release(bet_id)


def _expires(claim: Doc) -> datetime:
    expires = claim.get("expires_at")
    if not isinstance(expires, datetime):
        return datetime.min.replace(tzinfo=UTC)  # an unreadable lease is treated as expired
    return expires if expires.tzinfo else expires.replace(tzinfo=UTC)


def record_failure(
    db: Database[Doc], bet_id: str, seq: int, agent: str, heartbeat_id: str, error: str
) -> None:
    """Count one failed attempt on a bet at ``seq`` (an insert: never lost to a race)."""
    doc = {
        "bet_id": bet_id,
        "seq": seq,
        "agent": agent,
        "heartbeat_id": heartbeat_id,
        "error": error[:500],
        "at": clock(db).now(),
    }
    with translated("claims: recording a failure"):
        db[FAILURES].insert_one(doc)


def failures_at(db: Database[Doc], bet_id: str, seq: int) -> int:
    """Failed attempts on a bet since its last transition."""
    with translated("claims: counting failures"):
        return int(db[FAILURES].count_documents({"bet_id": bet_id, "seq": seq}))
