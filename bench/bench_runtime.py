"""Runtime benchmarks: heartbeat overhead, scaling with worker processes, parallel lookups.

Each figure is a ratio against a baseline measured in the same run (metric names in
``METRICS``):
1. an idle heartbeat round trip vs a raw no-op Celery task on the same broker;
2. draining N bets through six gates with instant handlers: 1 vs 2 worker processes;
3. a heartbeat whose handler makes 5 lookups of 200 ms: sequential vs ``ctx.gather``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.metrics import Metric, publish
from bench.stack import bench_stack, worker

ROUND_TRIPS = 100
#: Round trips of each kind not counted: the first ones open connections and fill caches.
WARM_UP = 10
#: Round trips of one kind in a row (see bench_round_trip).
BLOCK = 25
DRAIN_BETS = 60
LOOKUP_HEARTBEATS = 5
FLEET_ENV = {
    "FLEET_CATALOGUE": "bench.fleetdef:CATALOGUE",
    "FLEET_PIPELINE": "bench.fleetdef:PIPELINE",
}


def _round_trip(send: Any) -> float:
    start = time.perf_counter()
    send().get(timeout=60)
    return time.perf_counter() - start


def bench_round_trip(env: dict[str, str], logs: Path) -> tuple[float, float, float]:
    """Median seconds: raw no-op task, an idle fleet heartbeat, and the floor of any recorded
    heartbeat (``raw.floor``: a Redis lock and one store insert), 1 worker process each.

    Both workers run at once and the kinds of task take turns in blocks, so load on the
    machine that comes and goes hits every side of the ratio alike. Blocks, not single
    tasks in turn: a task sent the moment the other worker replied would pay for that
    worker's trailing work (its ack, its events) and make the baseline look slower.
    """
    from bench.rawapp import sender
    from fleet.app.celery_app import make_app
    from fleet.settings import load_settings

    with sender() as raw, make_app(load_settings()) as fleet_app:
        return _idle_times(env, logs, raw, fleet_app)


def _idle_times(env: dict[str, str], logs: Path, raw: Any, fleet_app: Any) -> tuple[float, float, float]:
    kinds = {
        "raw": lambda: raw.send_task("raw.noop", queue="raw"),
        "fleet": lambda: fleet_app.send_task("fleet.heartbeat", args=["idler"], queue="bench"),
        "floor": lambda: raw.send_task("raw.floor", args=[uuid.uuid4().hex], queue="raw"),
    }
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    raw_log, fleet_log = logs / "raw.log", logs / "idle.log"
    with worker("bench.rawapp", "raw", 1, env, raw_log), worker("fleet", "bench", 1, env, fleet_log):
        for send in kinds.values():
            for _ in range(WARM_UP):
                _round_trip(send)
        for _ in range(ROUND_TRIPS // BLOCK):
            for kind, send in kinds.items():
                times[kind] += [_round_trip(send) for _ in range(BLOCK)]
    raw_s, fleet_s, floor_s = (statistics.median(times[kind]) for kind in ("raw", "fleet", "floor"))
    return raw_s, fleet_s, floor_s


def _drain(env: dict[str, str], concurrency: int, log: Path) -> float:
    """Seconds to move DRAIN_BETS bets through all six gates with `concurrency` processes."""
    from bench.fleetdef import GATES, STAGES
    from fleet.app.celery_app import make_app
    from fleet.definitions.catalogue import load_registry
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
    from fleet.definitions.catalogue import load_registry
    from fleet.runtime.heartbeat import run_heartbeat
    from fleet.runtime.runtime import Runtime
    from fleet.settings import load_settings

    registry = load_registry(FLEET_ENV["FLEET_CATALOGUE"], FLEET_ENV["FLEET_PIPELINE"])
    runtime = Runtime.build(load_settings(), registry)
    timings = []
    for sequential in (True, False):
        start = time.perf_counter()
        for _ in range(LOOKUP_HEARTBEATS):
            runtime.enforcer.create_bet("maker", {"sequential": sequential})
            record = run_heartbeat(runtime, "looker")
            assert record.actions.get("looked_up") == 1, record  # counted by the stage reached
        timings.append((time.perf_counter() - start) / LOOKUP_HEARTBEATS)
    runtime.pool.shutdown()
    runtime.bet_pool.shutdown()
    return timings[0], timings[1]


METRICS = {
    "idle_heartbeat_vs_celery": "<= 1.5",
    "drain_2p_vs_1p": ">= 1.6",
    "lookups_parallel_speedup": ">= 3.0",
}


def run(names: set[str]) -> None:
    logs = Path(tempfile.mkdtemp(prefix="fleet-bench-logs-"))
    with bench_stack(extra=FLEET_ENV) as env:
        env = {**env, **FLEET_ENV}
        if "idle_heartbeat_vs_celery" in names:
            raw, idle, floor = bench_round_trip(env, logs)
            detail = (
                f"median {idle * 1000:.1f} ms vs raw no-op task {raw * 1000:.1f} ms; a raw task with "
                f"a Redis lock and one store insert (any recorded heartbeat's floor): "
                f"{floor * 1000:.1f} ms = {floor / raw:.2f}x raw, heartbeat {idle / floor:.2f}x that floor"
            )
            publish(
                Metric("idle_heartbeat_vs_celery", idle / raw, METRICS["idle_heartbeat_vs_celery"], detail)
            )
        if "drain_2p_vs_1p" in names:
            one = _drain(env, 1, logs / "drain1.log")
            two = _drain(env, 2, logs / "drain2.log")
            moves = DRAIN_BETS * 6
            detail = f"{moves / two:.1f} moves/s with 2 processes vs {moves / one:.1f} with 1"
            publish(Metric("drain_2p_vs_1p", one / two, METRICS["drain_2p_vs_1p"], detail))
        if "lookups_parallel_speedup" in names:
            seq, par = bench_lookups(env)
            detail = f"{par * 1000:.0f} ms parallel vs {seq * 1000:.0f} ms sequential per heartbeat"
            publish(
                Metric("lookups_parallel_speedup", seq / par, METRICS["lookups_parallel_speedup"], detail)
            )


def main() -> None:
    run(set(METRICS))


if __name__ == "__main__":
    main()
