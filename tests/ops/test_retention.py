"""Retention: what is past the window and needed by nothing goes; the ledger and live state stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pymongo.database import Database

from fleet.board import Board
from fleet.constants import (
    BEAT_SLOTS,
    BETS,
    CLAIMS,
    FAILURES,
    HEARTBEAT_PARTS,
    HEARTBEATS,
    HOLDS,
    PROBES,
    REFUSALS,
    REJECTED_TOKENS,
    TASK_EVENTS,
    TASKS,
    TRANSITIONS,
    USAGE,
)
from fleet.definitions.pipeline import validate_pipeline
from fleet.ledger import Enforcer
from fleet.ledger.claims import claim_key
from fleet.ops import retention
from fleet.store import Document, clock

from ..ledger.pipelines import small

WINDOW = timedelta(days=14)
OLD = timedelta(days=20)


@pytest.fixture
def aged(db: Database[Document]) -> dict[str, Any]:
    """A store with, in every pruned collection, old documents that may go and ones that must stay."""
    now = clock(db).now()
    old, new = now - OLD, now - timedelta(days=1)
    enforcer = Enforcer(db, validate_pipeline(small(), "small"))
    moved = enforcer.create_bet("scout", {})
    stuck = enforcer.create_bet("scout", {})
    enforcer.advance(moved.bet_id, "checked", "checker", moved.seq, verdict="go")
    for name, at in (("hb-old", old), ("hb-new", new)):
        db[HEARTBEATS].insert_one({"_id": name, "agent": "a", "started_at": at})
        part = {"_id": f"part-{name}", "agent": "a", "parent": name, "started_at": at}
        db[HEARTBEAT_PARTS].insert_one(part)
        db[REFUSALS].insert_one({"_id": f"r-{name}", "agent": "a", "at": at})
        db[PROBES].insert_one({"_id": f"p-{name}", "at": at})
        db[USAGE].insert_one({"_id": f"u-{name}", "agent": "a", "cost_usd": 1.0, "at": at})
        db[REJECTED_TOKENS].insert_one({"_id": f"x-{name}", "kind": "call", "at": at})
    # failures: an old one at the moved bet's old seq goes; an old one at the stuck bet's current seq stays
    db[FAILURES].insert_many(
        [
            {"_id": "f-gone", "bet_id": moved.bet_id, "seq": 0, "at": old},
            {"_id": "f-live", "bet_id": stuck.bet_id, "seq": 0, "at": old},
            {"_id": "f-new", "bet_id": moved.bet_id, "seq": 0, "at": new},
        ]
    )
    # claims: the moved bet's old chain at seq 0 goes whole; the stuck bet's chain at its seq stays
    for bet_id in (moved.bet_id, stuck.bet_id):
        for n in range(3):
            db[CLAIMS].insert_one(
                {"_id": claim_key(bet_id, 0, n), "bet_id": bet_id, "seq": 0, "n": n, "claimed_at": old}
            )
    board = Board(db)
    done, _ = board.file(assignee="ops", origin="escalation", dedupe_key="k1", title="t", by="ceo")
    board.close(done.task_id, by="ops", reason="fixed")
    open_, _ = board.file(assignee="ops", origin="escalation", dedupe_key="k2", title="t", by="ceo")
    db[TASKS].update_one({"_id": done.task_id}, {"$set": {"updated_at": old, "closed_at": old}})
    db[TASK_EVENTS].update_many({}, {"$set": {"at": old}})
    return {"moved": moved, "stuck": stuck, "done": done, "open": open_, "now": now}


def ids(db: Database[Document], collection: str) -> set[Any]:
    return {doc["_id"] for doc in db[collection].find({}, {"_id": 1})}


def test_prune_deletes_what_is_old_and_unneeded_and_keeps_the_rest(db: Database[Document], aged) -> None:
    transitions = db[TRANSITIONS].count_documents({})
    report = retention.prune(db, WINDOW, aged["now"])
    assert ids(db, HEARTBEATS) == {"hb-new"}
    assert ids(db, HEARTBEAT_PARTS) == {"part-hb-new"}
    assert ids(db, REFUSALS) == {"r-hb-new"}
    assert ids(db, PROBES) == {"p-hb-new"}
    assert ids(db, USAGE) == {"u-hb-new"}
    assert ids(db, REJECTED_TOKENS) == {"x-hb-new"}
    assert ids(db, FAILURES) == {"f-live", "f-new"}
    stuck = aged["stuck"].bet_id
    assert ids(db, CLAIMS) == {claim_key(stuck, 0, n) for n in range(3)}
    events = {doc["task_id"] for doc in db[TASK_EVENTS].find()}
    assert events == {aged["open"].task_id}
    assert ids(db, TASKS) == {aged["open"].task_id}  # the open one stays, with its history
    assert db[TRANSITIONS].count_documents({}) == transitions  # the ledger is never pruned
    assert report.deleted == {
        HEARTBEATS: 1,
        HEARTBEAT_PARTS: 1,
        BEAT_SLOTS: 0,
        REFUSALS: 1,
        PROBES: 1,
        FAILURES: 1,
        CLAIMS: 3,
        TASK_EVENTS: report.deleted[TASK_EVENTS],
        TASKS: 1,
        HOLDS: 0,
        REJECTED_TOKENS: 1,
        USAGE: 1,
    }
    assert report.deleted[TASK_EVENTS] >= 2  # filed + closed
    enforcer = Enforcer(db, validate_pipeline(small(), "small"))
    assert enforcer.verify() == []
    # And the closed task's key can be filed again: a new generation, open
    task, new = Board(db).file(assignee="ops", origin="escalation", dedupe_key="k1", title="t", by="ceo")
    assert new and task.is_open


def test_a_dry_run_counts_the_same_and_deletes_nothing(db: Database[Document], aged) -> None:
    before = {name: db[name].count_documents({}) for name in db.list_collection_names()}
    dry = retention.prune(db, WINDOW, aged["now"], dry_run=True)
    after = {name: db[name].count_documents({}) for name in db.list_collection_names()}
    assert before == after
    assert retention.prune(db, WINDOW, aged["now"]).deleted == dry.deleted


def test_pruning_twice_deletes_nothing_more(db: Database[Document], aged) -> None:
    retention.prune(db, WINDOW, aged["now"])
    assert retention.prune(db, WINDOW, aged["now"]).total == 0


def test_documents_with_unreadable_dates_are_kept(db: Database[Document], aged) -> None:
    db[HEARTBEATS].insert_one({"_id": "hb-odd", "agent": "a", "started_at": "yesterday"})
    db[CLAIMS].insert_one({"_id": "x:0:0", "bet_id": "x", "seq": "zero", "claimed_at": "long ago"})
    retention.prune(db, WINDOW, aged["now"])
    assert "hb-odd" in ids(db, HEARTBEATS) and "x:0:0" in ids(db, CLAIMS)


def test_a_bets_collection_document_that_does_not_parse_does_not_stop_pruning(
    db: Database[Document], aged
) -> None:
    db[BETS].insert_one({"_id": "junk", "seq": "not a number"})
    assert retention.prune(db, WINDOW, aged["now"]).deleted[HEARTBEATS] == 1
