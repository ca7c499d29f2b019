"""Enforcer commits against raw inserts into the same store, measured in the same run.

Metrics: ``enforcer_vs_insert_1p`` and ``enforcer_vs_insert_4p`` (goal >= 0.40: a commit is
two writes, the unique insert of the transition record and the projection write, so it
cannot pass 0.5 of one insert). Baselines: plain single-document ``insert_one`` of a
record-shaped document (1 process, then 4), and for reference ``update_one`` by ``_id``.
The enforcer walks bets along the default pipeline's advance path, passing each
commit the caller's view of the bet (as the heartbeat does). Loop counts are bounded.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.metrics import Metric, publish, say
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
    from fleet.definitions.pipeline import load_pipeline

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
    from fleet.store import clock

    db = _db()
    collection, now = db[RAW_COLLECTION], clock(db).now
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


def create_bets(count: int) -> list[Any]:
    from fleet.ledger import Enforcer

    pipeline = _pipeline()
    enforcer = Enforcer(_db(), pipeline)
    return [enforcer.create_bet(pipeline.creators[0], {"n": n}) for n in range(count)]


def advance_bets(bets: list[Any]) -> int:
    """Walk every bet along the advance path; return how many transitions were committed."""
    from fleet.ledger import Enforcer

    pipeline = _pipeline()
    enforcer = Enforcer(_db(), pipeline)
    path = advance_path(pipeline)
    for bet in bets:
        view = bet
        for to_stage, owner in path:
            view = enforcer.advance(view.bet_id, to_stage, owner, view.seq, verdict="bench", view=view)
    return len(bets) * len(path)


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
    say(f"  {label:<44} {count:6d} in {seconds:6.2f}s = {rate:8.1f}/s{ratio}")
    return rate


METRICS = {"enforcer_vs_insert_1p": ">= 0.40", "enforcer_vs_insert_4p": ">= 0.40"}


def measure(names: set[str]) -> None:
    from fleet.ledger import Enforcer
    from fleet.store import ensure_indexes

    db = _db()
    ensure_indexes(db)
    rates: dict[str, float] = {}
    say("baseline: plain insert_one into the same store")
    rates["raw1"] = report("raw inserts, 1 process", *timed(lambda: raw_inserts(RAW_INSERTS)))
    per = RAW_INSERTS // PROCESSES
    rates["raw4"] = report(f"raw inserts, {PROCESSES} processes", *in_processes("raw", [per] * PROCESSES))
    db[UPDATE_COLLECTION].insert_many([{"_id": n, "stage": "", "seq": 0} for n in range(UPDATE_DOCS)])
    updates = RAW_INSERTS // 4
    report("raw updates by _id, 1 process (reference)", *timed(lambda: raw_updates(updates)))
    say("fleet: through the enforcer (record insert + projection write)")
    start = time.perf_counter()
    bets = create_bets(BETS_SINGLE)
    report("bets created, 1 process", len(bets), time.perf_counter() - start, rates["raw1"])
    if "enforcer_vs_insert_1p" in names:
        count, seconds = timed(lambda: advance_bets(bets))
        adv1 = report("transitions committed, 1 process", count, seconds, rates["raw1"])
        publish(Metric("enforcer_vs_insert_1p", adv1 / rates["raw1"], METRICS["enforcer_vs_insert_1p"],
                       f"{adv1:.0f} commits/s vs {rates['raw1']:.0f} inserts/s"))  # fmt: skip
    if "enforcer_vs_insert_4p" in names:
        batches = [create_bets(BETS_PER_PROCESS) for _ in range(PROCESSES)]
        count, seconds = in_processes("advance", batches)
        adv4 = report(f"transitions committed, {PROCESSES} processes", count, seconds, rates["raw4"])
        publish(Metric("enforcer_vs_insert_4p", adv4 / rates["raw4"], METRICS["enforcer_vs_insert_4p"],
                       f"{adv4:.0f} commits/s vs {rates['raw4']:.0f} inserts/s"))  # fmt: skip
    violations = Enforcer(db, _pipeline()).verify()
    say(f"  ledger verify after the run: {len(violations)} violation(s)")


def run(names: set[str]) -> None:
    with bench_stack("fleet_bench_enforcer"):
        measure(names)


def main() -> None:
    run(set(METRICS))


if __name__ == "__main__":
    main()
