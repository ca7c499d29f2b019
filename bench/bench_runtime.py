"""Runtime benchmarks: heartbeat overhead, scaling with worker processes, parallel lookups.

Each figure is a ratio against a baseline measured in the same run:
1. an idle heartbeat round trip vs a raw no-op Celery task on the same broker;
2. draining N bets through six gates with instant handlers: 1 vs 2 worker processes;
3. a heartbeat whose handler makes 5 lookups of 200 ms: sequential vs ``ctx.gather``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stack import bench_stack, worker

ROUND_TRIPS = 40
DRAIN_BETS = 60
LOOKUP_HEARTBEATS = 5
FLEET_ENV = {
    "FLEET_CATALOGUE": "bench.fleetdef:CATALOGUE",
    "FLEET_PIPELINE": "bench.fleetdef:PIPELINE",
}


def _round_trips(send: Any, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        send().get(timeout=60)
        times.append(time.perf_counter() - start)
    return times


def bench_round_trip(env: dict[str, str], logs: Path) -> tuple[float, float]:
    """Median seconds: raw no-op task vs an idle fleet heartbeat (1 worker process each)."""
    from bench.rawapp import app as raw
    from fleet.celery_app import make_app
    from fleet.settings import load_settings

    with worker("bench.rawapp", "raw", 1, env, logs / "raw.log"):
        raw_times = _round_trips(lambda: raw.send_task("raw.noop", queue="raw"), ROUND_TRIPS)
    fleet_app = make_app(load_settings())
    with worker("fleet", "bench", 1, env, logs / "idle.log"):
        send = lambda: fleet_app.send_task("fleet.heartbeat", args=["idler"], queue="bench")  # noqa: E731
        fleet_times = _round_trips(send, ROUND_TRIPS)
    return statistics.median(raw_times), statistics.median(fleet_times)


def _drain(env: dict[str, str], concurrency: int, log: Path) -> float:
    """Seconds to move DRAIN_BETS bets through all six gates with `concurrency` processes."""
    from bench.fleetdef import GATES, STAGES
    from fleet.agents import load_registry
    from fleet.celery_app import make_app
    from fleet.ledger import Enforcer
    from fleet.settings import load_settings
    from fleet.store import database, ensure_indexes

    settings = load_settings()
    db = database(settings)
    for name in db.list_collection_names():
        db.drop_collection(name)
    ensure_indexes(db)
    enforcer = Enforcer(db, load_registry(FLEET_ENV["FLEET_CATALOGUE"], FLEET_ENV["FLEET_PIPELINE"]).pipeline)
    for _ in range(DRAIN_BETS):
        enforcer.create_bet("maker", {})
    app = make_app(settings)
    with worker("fleet", "bench", concurrency, env, log):
        start = time.perf_counter()
        while db["bets"].count_documents({"stage": STAGES[-1]}) < DRAIN_BETS:
            results = [app.send_task("fleet.heartbeat", args=[g], queue="bench") for g in GATES]
            for result in results:
                result.get(timeout=120)
        return time.perf_counter() - start


def bench_lookups(env: dict[str, str]) -> tuple[float, float]:
    """Seconds per heartbeat handling one bet with 5 lookups of 200 ms: sequential vs parallel."""
    from fleet.agents import load_registry
    from fleet.heartbeat import Runtime, run_heartbeat
    from fleet.settings import load_settings

    registry = load_registry(FLEET_ENV["FLEET_CATALOGUE"], FLEET_ENV["FLEET_PIPELINE"])
    runtime = Runtime.build(load_settings(), registry)
    timings = []
    for sequential in (True, False):
        start = time.perf_counter()
        for _ in range(LOOKUP_HEARTBEATS):
            runtime.enforcer.create_bet("maker", {"sequential": sequential})
            record = run_heartbeat(runtime, "looker")
            assert record.actions.get("parked") == 1, record
        timings.append((time.perf_counter() - start) / LOOKUP_HEARTBEATS)
    runtime.pool.shutdown()
    runtime.bet_pool.shutdown()
    return timings[0], timings[1]


def main() -> None:
    logs = Path(tempfile.mkdtemp(prefix="fleet-bench-logs-"))
    os.environ.update(FLEET_ENV)
    with bench_stack() as env:
        env = {**env, **FLEET_ENV}
        raw, idle = bench_round_trip(env, logs)
        print(
            f"round trip  raw no-op task {raw * 1000:7.1f} ms | idle heartbeat {idle * 1000:7.1f} ms "
            f"| heartbeat/raw = {idle / raw:.2f}x"
        )
        one = _drain(env, 1, logs / "drain1.log")
        two = _drain(env, 2, logs / "drain2.log")
        moves = DRAIN_BETS * 6
        print(
            f"drain {DRAIN_BETS} bets x 6 gates  1 process {one:6.2f} s ({moves / one:6.1f} moves/s) | "
            f"2 processes {two:6.2f} s ({moves / two:6.1f} moves/s) | speed-up = {one / two:.2f}x"
        )
        seq, par = bench_lookups(env)
        print(
            f"heartbeat with 5 lookups of 200 ms  sequential {seq * 1000:7.1f} ms"
            f" | parallel {par * 1000:7.1f} ms "
            f"| speed-up = {seq / par:.2f}x"
        )


if __name__ == "__main__":
    main()
