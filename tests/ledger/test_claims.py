"""Claims: no cap on how often a bet is tried, O(log n) reads to find the newest, own leases re-taken."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from pymongo.database import Database

from fleet.constants import CLAIMS
from fleet.ledger.claims import Claims, claim_key
from fleet.store import Document, clock

TTL = timedelta(minutes=5)


def released_chain(db: Database[Document], bet_id: str, seq: int, length: int) -> None:
    """``length`` earlier claims on the bet at ``seq``, each released (tried, not moved)."""
    now = clock(db).now()
    docs: list[dict[str, Any]] = [
        {
            "_id": claim_key(bet_id, seq, n),
            "bet_id": bet_id,
            "seq": seq,
            "n": n,
            "agent": "checker",
            "heartbeat_id": f"hb-{n}",
            "claimed_at": now,
            "expires_at": now + TTL,
            "released_at": now,
        }
        for n in range(length)
    ]
    db[CLAIMS].insert_many(docs)


def test_a_bet_touched_more_than_fifty_times_can_still_be_claimed(db: Database[Document]) -> None:
    # Given a bet claimed and released 60 times at one seq (the old code stopped at 50)
    for n in range(60):
        claims = Claims(db, "checker", f"hb-{n}", TTL)
        assert claims.try_claim("b1", 0), f"claim {n} refused"
        claims.release_all()
    # Then the 61st try still gets a lease, and it is the next in the chain
    last = Claims(db, "checker", "hb-last", TTL)
    assert last.try_claim("b1", 0)
    assert last.held == {"b1": claim_key("b1", 0, 60)}


def test_reads_per_claim_grow_with_the_log_of_earlier_claims(db: Database[Document]) -> None:
    reads: dict[int, int] = {}
    for earlier in (1, 10, 100, 999):
        bet_id = f"bet-{earlier}"
        released_chain(db, bet_id, 0, earlier)
        claims = Claims(db, "checker", "hb", TTL)
        assert claims.try_claim(bet_id, 0)
        assert claims.held[bet_id] == claim_key(bet_id, 0, earlier)
        reads[earlier] = claims.reads
    # A gallop then a bisection: about 2·log2(n) point reads, never a read per earlier claim
    for earlier, spent in reads.items():
        assert spent <= 2 * math.ceil(math.log2(earlier + 1)) + 2, reads
    assert reads[999] < 30


def test_a_retried_heartbeat_takes_its_own_live_lease_back_at_once(db: Database[Document]) -> None:
    # Given a heartbeat that claimed a bet and died before releasing it (lease still live)
    first = Claims(db, "checker", "task-42", TTL)
    assert first.try_claim("b1", 0)
    # When Celery runs the same task id again
    retry = Claims(db, "checker", "task-42", TTL)
    # Then it holds the same lease without waiting and without a new claim
    assert retry.try_claim("b1", 0)
    assert retry.held == first.held
    assert db[CLAIMS].count_documents({"bet_id": "b1"}) == 1
    # While any other heartbeat still respects that live lease
    assert not Claims(db, "checker", "task-43", TTL).try_claim("b1", 0)


def test_a_released_lease_is_not_retaken_but_followed_by_a_new_claim(db: Database[Document]) -> None:
    first = Claims(db, "checker", "task-42", TTL)
    assert first.try_claim("b1", 0)
    first.release_all()
    again = Claims(db, "checker", "task-42", TTL)
    assert again.try_claim("b1", 0)
    assert again.held == {"b1": claim_key("b1", 0, 1)}


def test_leases_are_dated_by_the_store_clock(db: Database[Document]) -> None:
    claims = Claims(db, "checker", "hb", TTL)
    before = clock(db).now()
    assert claims.try_claim("b1", 0)
    doc = db[CLAIMS].find_one({"_id": claim_key("b1", 0, 0)})
    assert doc is not None
    claimed = doc["claimed_at"].replace(tzinfo=before.tzinfo)
    # BSON dates keep milliseconds: the claim is no earlier than the store time read before it
    assert claimed >= before - timedelta(milliseconds=1)
    assert doc["expires_at"] - doc["claimed_at"] == TTL
