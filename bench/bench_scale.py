"""Scale-out benchmarks (issue 11): backlog drain over 1, 2 and 4 workers; handoffs with wake.

Figures, each measured in this run (metric names in ``METRICS``):
1. ``drain_2_vs_1`` and ``drain_4_vs_1``: 200 bets waiting at one gate whose handler waits
   200 ms on I/O per bet; one heartbeat of the gate fans them out as ``fleet.bet`` tasks;
   the rate with 2 and 4 separate ``celery worker`` processes over the rate with 1.
   Every worker runs the **threads** pool with 8 threads: the handler's time is I/O, which
   releases the GIL, so one process keeps 8 bets in flight with one runtime (one store and
   one Redis connection pool) where prefork needs 8 processes, 8 runtimes and their memory
   for the same overlap; gevent would go further but needs pymongo, redis-py and fleet's
   own threads monkey-patched. A raw Celery app running the same 200 x 200 ms tasks
   (no store) on 1 and 4 workers is printed next to it: what the machine allows.
   ``drain_4_vs_1_io2s``: the same with 2 s of I/O per bet,
   where the handlers' waiting, not the machine's CPU, is the limit.
2. ``handoff_median_s_wake``, ``handoff_p95_s_wake``: N bets through six gates in a line
   (50 ms of I/O per bet per gate) with wake on arrival, started by one heartbeat of the
   first gate: seconds from a bet's arrival at stages s1..s5 to its owner's pickup.
   ``peak_concurrent_wake``: the most heartbeats seen running at once meanwhile (the cap
   is ``WAKE_CAP``). The same flow with wake off and every gate polled each
   ``POLL_S`` seconds (a fast schedule) is printed next to it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.metrics import Metric, publish, say
from bench.stack import bench_stack, worker

DRAIN_BETS = 200
DRAIN_IO_S = 0.2
#: The same drain with handlers that wait this long: the workers' CPU is no longer the limit.
IO_BOUND_S = 2.0
POOL = "threads"
CONCURRENCY = 8
WAKE_BETS = 30
WAKE_IO_S = 0.05
WAKE_CAP = 4
POLL_S = 5.0
#: Stages whose arrivals are handoffs between agents (s0 is filled by the benchmark itself).
HANDOFF_STAGES = ("s1", "s2", "s3", "s4", "s5")
FLEET_ENV = {
    "FLEET_CATALOGUE": "bench.scalefleet:CATALOGUE",
    "FLEET_PIPELINE": "bench.scalefleet:PIPELINE",
}
METRICS = {
    "drain_2_vs_1": ">= 1.8",
    "drain_4_vs_1": ">= 3.2",
    "handoff_median_s_wake": "<= 1.0",
    "handoff_p95_s_wake": "<= 3.0",
    "peak_concurrent_wake": f"<= {WAKE_CAP}",
    "drain_4_vs_1_io2s": ">= 3.2",
}


def empty_store() -> Any:
    """An empty store (indexes built) and an empty broker; returns the database."""
    from fleet.settings import load_settings
    from fleet.store import database, ensure_indexes, redis_client

    settings = load_settings()
    redis_client(settings.broker_url).flushdb()
    db = database(settings)
    for name in db.list_collection_names():
        db.drop_collection(name)
    ensure_indexes(db)
    return db


def _fresh(n_bets: int, io_s: float) -> Any:
    """An empty store and broker, then ``n_bets`` bets at s0; returns the database."""
    from fleet.definitions.catalogue import load_registry
    from fleet.ledger import Enforcer

    db = empty_store()
    enforcer = Enforcer(db, load_registry(FLEET_ENV["FLEET_CATALOGUE"], FLEET_ENV["FLEET_PIPELINE"]).pipeline)
    for _ in range(n_bets):
        enforcer.create_bet("maker", {"io_s": io_s})
    return db


def _send(agent: str) -> None:
    from fleet.app.celery_app import make_app
    from fleet.settings import load_settings

    make_app(load_settings()).send_task(
        "fleet.heartbeat", args=[agent], kwargs={"reason": "adhoc"}, queue="bench"
    )


def _until(
    done: Callable[[], bool], limit_s: float, what: str, every: Callable[[], None] | None = None
) -> None:
    deadline = time.monotonic() + limit_s
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench: {what} not done within {limit_s:g} s")
        if every:
            every()
        time.sleep(0.1)  # poll: wait for the workers with a deadline


def drain(env: dict[str, str], workers: int, logs: Path, io_s: float = DRAIN_IO_S) -> float:
    """Seconds for ``workers`` worker processes to move the whole backlog out of s0."""
    from fleet.constants import FANOUT_RUNNING_KEY
    from fleet.settings import load_settings
    from fleet.store import redis_client

    db = _fresh(DRAIN_BETS, io_s)
    client = redis_client(load_settings().broker_url)
    with ExitStack() as stack:
        for n in range(workers):
            log = logs / f"drain{workers}-{n}-io{io_s:g}.log"
            stack.enter_context(worker("fleet", "bench", CONCURRENCY, env, log, pool=POOL))
        start = time.perf_counter()
        _send("drainer")
        # Watch the drainer's in-flight set in Redis (cheap), not the store: polling the store
        # would take CPU from the workers being measured. Each bet leaves it when it is done.
        in_flight = lambda: int(client.zcard(FANOUT_RUNNING_KEY.format(agent="drainer")))  # noqa: E731
        _until(lambda: in_flight() > 0, 600, "the dispatch")
        _until(lambda: in_flight() == 0, 600, "the drain")
        elapsed = time.perf_counter() - start
    moved = db["transitions"].count_documents({"to_stage": "drained"})  # every bet, exactly once
    if moved != DRAIN_BETS:
        raise RuntimeError(f"bench: {moved} drain transitions for {DRAIN_BETS} bets")
    return elapsed


def raw_drain(env: dict[str, str], workers: int, logs: Path) -> float:
    """Seconds for ``workers`` raw Celery workers (same pool) to run DRAIN_BETS tasks of DRAIN_IO_S."""
    from bench.rawapp import RAW_DONE_KEY, sender
    from fleet.settings import load_settings
    from fleet.store import redis_client

    client = redis_client(load_settings().broker_url)
    client.flushdb()
    with ExitStack() as stack:
        raw = stack.enter_context(sender())
        for n in range(workers):
            log = logs / f"raw{workers}-{n}.log"
            stack.enter_context(worker("bench.rawapp", "raw", CONCURRENCY, env, log, pool=POOL))
        start = time.perf_counter()
        for _ in range(DRAIN_BETS):
            raw.send_task("raw.io", args=[DRAIN_IO_S], queue="raw")
        _until(lambda: int(client.get(RAW_DONE_KEY) or 0) >= DRAIN_BETS, 600, "the raw drain")
        return time.perf_counter() - start


def _flow(env: dict[str, str], logs: Path, wake: bool) -> tuple[list[float], int, float]:
    from bench.scalefleet import GATES, STAGES
    from fleet.queries import peak_concurrency
    from fleet.runtime.handoff import first_pickups

    env = {**env, "FLEET_WAKE": str(wake).lower(), "FLEET_WAKE_MAX_CONCURRENT": str(WAKE_CAP)}
    db = _fresh(WAKE_BETS, WAKE_IO_S)
    last = {"sent": 0.0}

    def poll_all() -> None:  # the schedule stand-in: every gate every POLL_S seconds
        if not wake and time.monotonic() - last["sent"] >= POLL_S:
            last["sent"] = time.monotonic()
            for gate in GATES:
                _send(gate)

    with worker("fleet", "bench", CONCURRENCY, env, logs / f"flow-wake-{wake}.log", pool=POOL):
        start = time.perf_counter()
        if wake:
            _send(GATES[0])
        done = lambda: db["bets"].count_documents({"stage": STAGES[-1]}) >= WAKE_BETS  # noqa: E731
        _until(done, 600, "the pipeline", every=poll_all)
        elapsed = time.perf_counter() - start
        time.sleep(1.0)  # let the last heartbeats write their records before reading them
    docs = list(db["heartbeats"].find({}, {"agent": 1, "bets": 1}))
    waits = [wait for stage, _, wait in first_pickups(docs).values() if stage in HANDOFF_STAGES]
    return waits, peak_concurrency(db).peak, elapsed


def run(names: set[str]) -> None:
    from fleet.runtime.handoff import percentile

    logs = Path(tempfile.mkdtemp(prefix="fleet-bench-logs-"))
    with bench_stack(extra=FLEET_ENV) as env:
        env = {**env, **FLEET_ENV}
        if names & {"drain_2_vs_1", "drain_4_vs_1"}:
            times = {n: drain(env, n, logs) for n in (1, 2, 4)}
            rates = {n: DRAIN_BETS / t for n, t in times.items()}
            per = ", ".join(f"{n} worker(s) {rate:.1f}" for n, rate in rates.items())
            say(f"  drain rates (bets/s): {per}; I/O alone allows {CONCURRENCY / DRAIN_IO_S:.0f} per worker")
            raw = {n: DRAIN_BETS / raw_drain(env, n, logs) for n in (1, 4)}
            say(f"  raw Celery baseline, same tasks' I/O and pool, no store: 1 worker {raw[1]:.1f}/s,"
                f" 4 workers {raw[4]:.1f}/s ({raw[4] / raw[1]:.2f}x)")  # fmt: skip
            for n in (2, 4):
                name = f"drain_{n}_vs_1"
                if name in names:
                    detail = f"{rates[n]:.1f} bets/s with {n} workers vs {rates[1]:.1f} with 1"
                    publish(Metric(name, rates[n] / rates[1], METRICS[name], detail))
        if "drain_4_vs_1_io2s" in names:
            times = {n: drain(env, n, logs, IO_BOUND_S) for n in (1, 4)}
            one, four = DRAIN_BETS / times[1], DRAIN_BETS / times[4]
            detail = f"handler I/O {IO_BOUND_S:g} s: {four:.1f} bets/s with 4 workers vs {one:.1f} with 1"
            publish(Metric("drain_4_vs_1_io2s", four / one, METRICS["drain_4_vs_1_io2s"], detail))
        if names & {"handoff_median_s_wake", "handoff_p95_s_wake", "peak_concurrent_wake"}:
            waits, peak, elapsed = _flow(env, logs, wake=True)
            polled, _, polled_elapsed = _flow(env, logs, wake=False)
            base = (
                f"polling every {POLL_S:g} s: median {percentile(polled, 0.5):.2f} s,"
                f" p95 {percentile(polled, 0.95):.2f} s, flow {polled_elapsed:.1f} s"
                f" (wake: {elapsed:.1f} s)"
            )
            figures = {
                "handoff_median_s_wake": percentile(waits, 0.5),
                "handoff_p95_s_wake": percentile(waits, 0.95),
                "peak_concurrent_wake": float(peak),
            }
            for name, value in figures.items():
                if name in names:
                    detail = (
                        base if name != "peak_concurrent_wake" else f"cap {WAKE_CAP}, {len(waits)} handoffs"
                    )
                    publish(Metric(name, value, METRICS[name], detail))


def main() -> None:
    run(set(METRICS))


if __name__ == "__main__":
    main()
