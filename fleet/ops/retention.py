"""Retention: what the fleet forgets, and when. Transitions are never pruned: they are the ledger.

Past the window (``FLEET_RETENTION_DAYS``, default 14) the ops watchdog
(:func:`fleet.ops.ceo.watchdog`) and ``fleet prune`` delete:

- heartbeat records, refusals, rejected-token records and probes older than the window (on MongoDB also
  expired by TTL indexes, see :mod:`fleet.store.indexes`);
- failures older than the window, unless the bet is still at the seq they counted
  against (the stranded audit counts a live bet's failures at its current seq);
- holds on a seq the bet has left (:mod:`fleet.ledger.holds`);
- claim chains (every claim of one bet at one seq, so claim heads stay gap-free)
  whose newest claim is older than the window and whose bet has moved past that seq;
- tasks done (closed) before the window, with their events (open tasks keep their whole
  history; a dedupe key filed again later simply starts a new generation).

Pruning keeps the collections the heartbeat reads (tasks, events, claims) bounded by the
window on FerretDB, where every filter but ``_id`` reads the whole table.

Every deletion is by ``_id`` in batches, after a read that decided it; a document
that is needed by a live bet or an open task is never selected.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database

from fleet.board import TaskStatus
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
    USAGE,
)
from fleet.store import translated

Doc = dict[str, Any]

#: Documents deleted per ``delete_many`` call.
BATCH = 500


@dataclass
class PruneReport:
    """How many documents were (or, in a dry run, would be) deleted, per collection."""

    cutoff: datetime
    dry_run: bool
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def prune(db: Database[Doc], window: timedelta, now: datetime, *, dry_run: bool = False) -> PruneReport:
    """Delete what is older than ``window`` at ``now`` and no longer needed (see the module)."""
    cutoff = now - window
    report = PruneReport(cutoff=cutoff, dry_run=dry_run)
    with translated("retention: pruning"):
        current = _current_seqs(db)
        selections = {
            HEARTBEATS: _older(db, HEARTBEATS, "started_at", cutoff),
            HEARTBEAT_PARTS: _older(db, HEARTBEAT_PARTS, "started_at", cutoff),
            REFUSALS: _older(db, REFUSALS, "at", cutoff),
            REJECTED_TOKENS: _older(db, REJECTED_TOKENS, "at", cutoff),
            PROBES: _older(db, PROBES, "at", cutoff),
            BEAT_SLOTS: _older(db, BEAT_SLOTS, "at", cutoff),
            USAGE: _older(db, USAGE, "at", cutoff),  # budgets read only today's
            FAILURES: _old_failures(db, cutoff, current),
            HOLDS: _old_holds(db, cutoff, current),
            CLAIMS: _old_claim_chains(db, cutoff, current),
        }
        closed = _closed_before(db, cutoff)
        selections[TASK_EVENTS] = _events_of(db, closed)
        selections[TASKS] = iter(closed)
        for collection, ids in selections.items():
            report.deleted[collection] = _delete(db, collection, list(ids), dry_run)
    return report


def _older(db: Database[Doc], collection: str, when: str, cutoff: datetime) -> Iterator[Any]:
    for doc in db[collection].find({when: {"$lt": cutoff}}, {"_id": 1}):
        yield doc["_id"]


def _current_seqs(db: Database[Doc]) -> dict[str, int]:
    """bet_id -> the seq its projection is at (a lagging projection only keeps more).

    Bets whose seq does not read as a number are left out: what refers to them is kept."""
    seqs: dict[str, int] = {}
    for doc in db[BETS].find({}, {"seq": 1}):
        seq = doc.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            seqs[str(doc["_id"])] = seq
    return seqs


def _old_failures(db: Database[Doc], cutoff: datetime, current: dict[str, int]) -> Iterator[Any]:
    for doc in db[FAILURES].find({"at": {"$lt": cutoff}}, {"bet_id": 1, "seq": 1}):
        seq = current.get(str(doc.get("bet_id")))
        if seq is not None and seq != doc.get("seq"):  # only for a bet known to have moved on
            yield doc["_id"]


def _old_holds(db: Database[Doc], cutoff: datetime, current: dict[str, int]) -> Iterator[Any]:
    """Holds on a seq the bet has left (they can never apply again), taken before the window."""
    for doc in db[HOLDS].find({}, {"bet_id": 1, "seq": 1, "at": 1}):
        seq = current.get(str(doc.get("bet_id")))
        if seq is not None and seq != doc.get("seq") and _before(doc.get("at"), cutoff):
            yield doc["_id"]


def _old_claim_chains(db: Database[Doc], cutoff: datetime, current: dict[str, int]) -> Iterator[Any]:
    chains: dict[tuple[str, Any], list[Doc]] = {}
    for doc in db[CLAIMS].find({}, {"bet_id": 1, "seq": 1, "claimed_at": 1}):
        chains.setdefault((str(doc.get("bet_id")), doc.get("seq")), []).append(doc)
    for (bet_id, seq), docs in chains.items():
        moved_on = isinstance(seq, int) and current.get(bet_id, -1) > seq
        if moved_on and _all_before(docs, "claimed_at", cutoff):
            yield from (doc["_id"] for doc in docs)


def _closed_before(db: Database[Doc], cutoff: datetime) -> list[Any]:
    """Ids of tasks done before ``cutoff`` (by their close, else their last update)."""
    return [
        doc["_id"]
        for doc in db[TASKS].find({"status": str(TaskStatus.DONE)}, {"updated_at": 1, "closed_at": 1})
        if _before(doc.get("closed_at") or doc.get("updated_at"), cutoff)
    ]


def _events_of(db: Database[Doc], task_ids: list[Any]) -> Iterator[Any]:
    wanted = {str(task_id) for task_id in task_ids}
    if not wanted:
        return
    for doc in db[TASK_EVENTS].find({}, {"task_id": 1}):
        if str(doc.get("task_id")) in wanted:
            yield doc["_id"]


def _all_before(docs: Iterable[Doc], when: str, cutoff: datetime) -> bool:
    return all(_before(doc.get(when), cutoff) for doc in docs)


def _before(value: object, cutoff: datetime) -> bool:
    if not isinstance(value, datetime):
        return False  # unreadable dates are kept: better a document too many than one too few
    aware = value if value.tzinfo else value.replace(tzinfo=cutoff.tzinfo)
    return aware < cutoff


def _delete(db: Database[Doc], collection: str, ids: list[Any], dry_run: bool) -> int:
    if dry_run:
        return len(ids)
    deleted = 0
    for start in range(0, len(ids), BATCH):
        deleted += db[collection].delete_many({"_id": {"$in": ids[start : start + BATCH]}}).deleted_count
    return deleted
