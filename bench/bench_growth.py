"""Growth: the commit and the heartbeat record cost the same with 100,000 stored as with 1,000.

Metrics (goal >= 0.8 each), measured in one run on one store:
- ``growth_commit``: transitions committed/s through the enforcer with 100,000 transition
  records (and a bet per 7 of them) stored, divided by the same with 1,000;
- ``growth_heartbeat_record``: heartbeat records written/s (the runtime's own
  ``write_record``) with 100,000 heartbeat records stored, divided by the same with 1,000.

Filler documents are copies of real ones (a committed record, a written heartbeat
record) under new ``_id``s, inserted in batches; the measured writes are the real calls.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from bench.bench_enforcer import _db, _pipeline, advance_path
from bench.metrics import Metric, publish, say
from bench.stack import bench_stack

SMALL, LARGE = 1_000, 100_000
COMMIT_BETS = 40
RECORD_WRITES = 400
FILL_BATCH = 2_000
METRICS = {"growth_commit": ">= 0.8", "growth_heartbeat_record": ">= 0.8"}


def _fill(db: Any, collection: str, template: dict[str, Any], count: int, tag: str) -> None:
    for start in range(0, count, FILL_BATCH):
        batch = [_filler(collection, template, tag, n) for n in range(start, min(count, start + FILL_BATCH))]
        db[collection].insert_many(batch)


def _filler(collection: str, template: dict[str, Any], tag: str, n: int) -> dict[str, Any]:
    doc = {**template, "_id": f"fill-{collection}-{tag}-{n}"}
    if "bet_id" in template:  # a transition record: unique per (bet, seq), 7 records per bet
        doc.update(bet_id=f"fill-{tag}-{n // 7}", seq=n % 7, _id=f"fill-{tag}-{n // 7}:{n % 7}")
    return doc


def _grow_to(db: Any, total: int, templates: dict[str, dict[str, Any]]) -> None:
    """Top the transitions, bets and heartbeats collections up to ``total`` (bets: total / 7)."""
    from fleet.constants import BETS, HEARTBEATS, TRANSITIONS

    tag = uuid.uuid4().hex[:6]
    for collection, want, template in (
        (TRANSITIONS, total, templates["record"]),
        (BETS, total // 7, templates["bet"]),
        (HEARTBEATS, total, templates["heartbeat"]),
    ):
        missing = want - db[collection].estimated_document_count()
        if missing > 0:
            _fill(db, collection, template, missing, tag)


def _commits_per_s(db: Any) -> float:
    from fleet.ledger import Enforcer

    pipeline = _pipeline()
    enforcer = Enforcer(db, pipeline)
    path = advance_path(pipeline)
    bets = [enforcer.create_bet(pipeline.creators[0], {"n": n}) for n in range(COMMIT_BETS)]
    start = time.perf_counter()
    for bet in bets:
        view = bet
        for to_stage, owner in path:
            view = enforcer.advance(view.bet_id, to_stage, owner, view.seq, verdict="bench", view=view)
    return len(bets) * len(path) / (time.perf_counter() - start)


def _records_per_s(db: Any, template: dict[str, Any]) -> float:
    from fleet.runtime.records import write_record

    tag = uuid.uuid4().hex[:6]
    start = time.perf_counter()
    for n in range(RECORD_WRITES):
        write_record(db, {**template, "_id": f"bench-{tag}-{n}"})
    return RECORD_WRITES / (time.perf_counter() - start)


def _templates(db: Any) -> dict[str, dict[str, Any]]:
    """Real documents to copy: one committed record and its bet, one heartbeat record."""
    from fleet.constants import BETS, HEARTBEATS, TRANSITIONS

    _commits_per_s(db)  # commits real records (and warms up)
    _records_per_s(db, {"agent": "bench", "status": "ok", "reason": "bench", "actions": {"claimed": 0}})
    record = db[TRANSITIONS].find_one({"seq": 1}) or {}
    bet = db[BETS].find_one({}) or {}
    heartbeat = db[HEARTBEATS].find_one({}) or {}
    return {name: {k: v for k, v in doc.items() if k != "_id"} for name, doc in
            (("record", record), ("bet", bet), ("heartbeat", heartbeat))}  # fmt: skip


def measure(names: set[str]) -> None:
    from fleet.store import ensure_indexes

    db = _db()
    ensure_indexes(db)
    templates = _templates(db)
    rates: dict[tuple[str, int], float] = {}
    for total in (SMALL, LARGE):
        start = time.perf_counter()
        _grow_to(db, total, templates)
        ensure_indexes(db)  # new tables get their _id expression index too
        say(f"stored {total:,} transitions and heartbeats (filled in {time.perf_counter() - start:.1f}s)")
        rates["commit", total] = _commits_per_s(db)
        rates["record", total] = _records_per_s(db, templates["heartbeat"])
        say(f"  commits/s {rates['commit', total]:8.1f} | heartbeat records/s {rates['record', total]:8.1f}")
    for metric, key in (("growth_commit", "commit"), ("growth_heartbeat_record", "record")):
        if metric in names:
            ratio = rates[key, LARGE] / rates[key, SMALL]
            detail = f"{rates[key, LARGE]:.0f}/s at {LARGE:,} vs {rates[key, SMALL]:.0f}/s at {SMALL:,}"
            publish(Metric(metric, ratio, METRICS[metric], detail))


def run(names: set[str]) -> None:
    with bench_stack("fleet_bench_growth"):
        measure(names)


if __name__ == "__main__":
    run(set(METRICS))
