"""A burst of work (issue 27): 200 bets seeded at once, drained by wakes, not by later slots.

``burst_drain_s``: 200 bets are created at the first stage of a six-gate line whose gates
take 10 bets a heartbeat (``BURST_IO_S`` of I/O per bet), seeded the way ``fleet seed`` does
it (one commit each, then one wake of the first stage's poller); seconds until the first
stage is empty, with wake on. Its ratio to the time the handlers need there (bets x handler
time / the agent's bet threads) is ``burst_drain_vs_work`` (goal <= 2), and
``burst_pickup_p95_s`` the 95th percentile of arrival-to-pickup at that stage (goal <= 10).
The same burst with scheduled polls only (the first gate every ``POLL_S`` seconds, no
wakes) is printed beside it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.bench_scale import CONCURRENCY, POOL, _until, empty_store
from bench.metrics import Metric, publish, say
from bench.stack import bench_stack, worker

BURST_BETS = 200
BURST_IO_S = 0.5
POLL_S = 5.0
FLEET_ENV = {"FLEET_CATALOGUE": "bench.burstfleet:CATALOGUE", "FLEET_PIPELINE": "bench.burstfleet:PIPELINE"}
#: burst_drain_s's goal is burst_drain_vs_work's in seconds: twice what the handlers need (50 s).
METRICS = {"burst_drain_s": "<= 50.0", "burst_drain_vs_work": "<= 2.0", "burst_pickup_p95_s": "<= 10.0"}


def _burst(env: dict[str, str], logs: Path, wake: bool) -> tuple[float, list[float]]:
    """Seconds until the first stage is empty, and its arrival-to-pickup waits."""
    from bench.fleetdef import STAGES
    from fleet.app.celery_app import make_app
    from fleet.definitions.catalogue import load_registry
    from fleet.ledger import Enforcer
    from fleet.runtime import wake as waking
    from fleet.runtime.handoff import first_pickups
    from fleet.settings import load_settings

    env = {**env, "FLEET_WAKE": str(wake).lower()}
    os.environ["FLEET_WAKE"] = str(wake).lower()
    settings = load_settings()
    db = empty_store()
    registry = load_registry(FLEET_ENV["FLEET_CATALOGUE"], FLEET_ENV["FLEET_PIPELINE"])
    app = make_app(settings)
    last = {"sent": 0.0}

    def poll() -> None:  # the schedule stand-in: the first gate every POLL_S seconds
        if not wake and time.monotonic() - last["sent"] >= POLL_S:
            last["sent"] = time.monotonic()
            app.send_task("fleet.heartbeat", args=["gate1"], kwargs={"reason": "scheduled"}, queue="bench")

    with worker("fleet", "bench", CONCURRENCY, env, logs / f"burst-wake-{wake}.log", pool=POOL):
        enforcer = Enforcer(db, registry.pipeline)
        start = time.perf_counter()
        for _ in range(BURST_BETS):
            enforcer.create_bet("maker", {"io_s": BURST_IO_S})
        waking.on_arrival(waking.Wakeup.of(registry, settings), STAGES[0])  # as `fleet seed` does
        empty = lambda: db["bets"].count_documents({"stage": STAGES[0]}) == 0  # noqa: E731
        _until(empty, 1200, "the first stage to empty", every=poll)
        elapsed = time.perf_counter() - start
        time.sleep(1.0)  # let the last heartbeats write their records before reading them
    docs = list(db["heartbeats"].find({}, {"agent": 1, "bets": 1}))
    waits = [wait for stage, _, wait in first_pickups(docs).values() if stage == STAGES[0]]
    return elapsed, waits


def run(names: set[str]) -> None:
    from bench.burstfleet import BATCH
    from fleet.runtime.handoff import percentile
    from fleet.runtime.runtime import BET_THREADS

    logs = Path(tempfile.mkdtemp(prefix="fleet-bench-logs-"))
    saved = dict(os.environ)
    os.environ.update(FLEET_ENV)
    try:
        with bench_stack() as env:
            env = {**env, **FLEET_ENV}
            woken, waits = _burst(env, logs, wake=True)
            polled, polled_waits = _burst(env, logs, wake=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    work = BURST_BETS * BURST_IO_S / BET_THREADS  # one agent: one heartbeat at a time, its bet threads
    base = (f"{BURST_BETS} bets, {BURST_IO_S:g} s each, batches of {BATCH}: first stage empty in"
            f" {woken:.1f} s with wake (handlers need {work:.1f} s); scheduled polls every {POLL_S:g} s"
            f" only: {polled:.1f} s, p95 pickup {percentile(polled_waits, 0.95):.1f} s")  # fmt: skip
    figures = {
        "burst_drain_s": woken,
        "burst_drain_vs_work": woken / work,
        "burst_pickup_p95_s": percentile(waits, 0.95),
    }
    for name, value in figures.items():
        if name in names:
            publish(Metric(name, value, METRICS[name], base))
    say(f"  {len(waits)} pickups at the first stage")


def main() -> None:
    run(set(METRICS))


if __name__ == "__main__":
    main()
