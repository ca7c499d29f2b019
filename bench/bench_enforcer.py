"""Enforcer throughput against raw inserts into the same store, measured in the same run.

1. baselines: plain single-document inserts/s, and plain ``update_one`` by ``_id``/s on a
   collection as large as the bench's ``bets`` (1 process, then 4 processes);
2. transitions committed/s through ``Enforcer.advance`` along the default pipeline's
   advance path (1 process, then 4 processes, each on its own bets);
3. bets created/s through ``Enforcer.create_bet`` (1 process).

An advance costs five store round trips: three ``_id`` reads (the record at
``expected_seq``, record 0, the check for a newer record), one insert (the commit) and one
update (the projection). On FerretDB v1.24 (SQLite) an update by ``_id`` scans the whole
collection under SQLite's single write lock, so the projection write dominates and
concurrent writers queue on it. Loop counts are bounded; nothing asserts on time.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.stack import bench_stack

RAW_INSERTS = 2000
BETS_SINGLE = 60
BETS_PER_PROCESS = 30
PROCESSES = 4
RAW_COLLECTION = "bench_raw"
UPDATE_COLLECTION = "bench_update"
#: Documents in the update baseline's collection: about as many as the bench's bets.
UPDATE_DOCS = BETS_SINGLE + PROCESSES * BETS_PER_PROCESS


def _db() -> Any:
    from fleet.settings import load_settings
    from fleet.store import database

    return database(load_settings())  # load, not get: the stack's env was set after import


def _pipeline() -> Any:
    from fleet.pipeline import load_pipeline

    return load_pipeline(None)


def advance_path(pipeline: Any) -> list[tuple[str, str]]:
    """(to_stage, owner) of each advance edge from the initial stage to a terminal one."""
    path: list[tuple[str, str]] = []
    stage = pipeline.initial_stage
    while not pipeline.is_terminal(stage):
        edge = next(t for t in pipeline.edges_from(stage) if t.kind.value == "advance")
        path.append((edge.dest, edge.owner))
        stage = edge.dest
    return path


# --- the work one process does (also run in spawned children) ------------------------


def raw_inserts(count: int) -> int:
    """Insert ``count`` documents shaped like a transition record, one call each."""
    from fleet.ledger import now

    collection = _db()[RAW_COLLECTION]
    tag = uuid.uuid4().hex[:8]
    for n in range(count):
        collection.insert_one({
            "_id": f"{tag}:{n}", "bet_id": tag, "seq": n, "from_stage": "a", "to_stage": "b",
            "agent": "bench", "kind": "advance", "verdict": "ok", "evidence": {}, "at": now(),
        })  # fmt: skip
    return count


def raw_updates(count: int) -> int:
    """``update_one`` by ``_id`` ``count`` times, over the baseline collection's documents."""
    collection = _db()[UPDATE_COLLECTION]
    tag = uuid.uuid4().hex[:8]
    for n in range(count):
        collection.update_one({"_id": n % UPDATE_DOCS}, {"$set": {"stage": f"{tag}{n}", "seq": n}})
    return count


def create_bets(count: int) -> list[str]:
    from fleet.ledger import Enforcer

    pipeline = _pipeline()
    enforcer = Enforcer(_db(), pipeline)
    return [enforcer.create_bet(pipeline.creators[0], {"n": n}).bet_id for n in range(count)]


def advance_bets(bet_ids: list[str]) -> int:
    """Walk every bet along the advance path; return how many transitions were committed."""
    from fleet.ledger import Enforcer

    pipeline = _pipeline()
    enforcer = Enforcer(_db(), pipeline)
    path = advance_path(pipeline)
    for bet_id in bet_ids:
        for seq, (to_stage, owner) in enumerate(path):
            enforcer.advance(bet_id, to_stage, owner, seq, verdict="bench")
    return len(bet_ids) * len(path)


def _child(work: str, arg: Any, barrier: Any, done: Any) -> None:
    func: Callable[[Any], int] = {"raw": raw_inserts, "update": raw_updates, "advance": advance_bets}[work]
    _db()[RAW_COLLECTION].find_one({})  # connect before the start line
    barrier.wait(timeout=120)
    done.put(func(arg))


# --- measuring ------------------------------------------------------------------------


def timed(func: Callable[[], int]) -> tuple[int, float]:
    start = time.perf_counter()
    count = func()
    return count, time.perf_counter() - start


def in_processes(work: str, args: list[Any]) -> tuple[int, float]:
    """Run ``work`` in one spawned process per arg, released together; (total, seconds)."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args) + 1)
    done = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(work, arg, barrier, done)) for arg in args]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=120)  # every child is up and connected: start the clock
    start = time.perf_counter()
    total = sum(done.get(timeout=600) for _ in procs)
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join(timeout=30)
    return total, elapsed


def report(label: str, count: int, seconds: float, baseline: float | None = None) -> float:
    rate = count / seconds
    ratio = f"  ({rate / baseline:5.1%} of raw)" if baseline else ""
    print(f"  {label:<44} {count:6d} in {seconds:6.2f}s = {rate:8.1f}/s{ratio}", flush=True)
    return rate


def run() -> dict[str, float]:
    from fleet.ledger import Enforcer
    from fleet.store import ensure_indexes

    db = _db()
    ensure_indexes(db)
    rates: dict[str, float] = {}
    print("baseline: plain insert_one into the same FerretDB", flush=True)
    rates["raw1"] = report("raw inserts, 1 process", *timed(lambda: raw_inserts(RAW_INSERTS)))
    per = RAW_INSERTS // PROCESSES
    rates["raw4"] = report(f"raw inserts, {PROCESSES} processes", *in_processes("raw", [per] * PROCESSES))
    db[UPDATE_COLLECTION].insert_many([{"_id": n, "stage": "", "seq": 0} for n in range(UPDATE_DOCS)])
    updates = RAW_INSERTS // 4
    rates["upd1"] = report("raw updates by _id, 1 process", *timed(lambda: raw_updates(updates)))
    label = f"raw updates by _id, {PROCESSES} processes"
    rates["upd4"] = report(label, *in_processes("update", [updates // PROCESSES] * PROCESSES))
    print("fleet: through the enforcer", flush=True)
    start = time.perf_counter()
    bet_ids = create_bets(BETS_SINGLE)
    rates["create1"] = report(
        "bets created, 1 process", len(bet_ids), time.perf_counter() - start, rates["raw1"]
    )
    count, seconds = timed(lambda: advance_bets(bet_ids))
    rates["adv1"] = report("transitions committed, 1 process", count, seconds, rates["raw1"])
    batches = [create_bets(BETS_PER_PROCESS) for _ in range(PROCESSES)]
    count, seconds = in_processes("advance", batches)
    label = f"transitions committed, {PROCESSES} processes"
    rates["adv4"] = report(label, count, seconds, rates["raw4"])
    violations = Enforcer(db, _pipeline()).verify()
    print(f"  ledger verify after the run: {len(violations)} violation(s)")
    print(f"  scaling 1 -> {PROCESSES} processes: raw x{rates['raw4'] / rates['raw1']:.2f}, "
          f"enforcer x{rates['adv4'] / rates['adv1']:.2f}")  # fmt: skip
    return rates


def main() -> None:
    with bench_stack("fleet_bench_enforcer"):
        run()


if __name__ == "__main__":
    main()
