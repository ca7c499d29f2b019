"""History-proof reads: what operators and heartbeats read costs the live work, not the history.

One store is grown from ``SMALL`` to ``LARGE`` bets through the project's own write paths
(the enforcer's creations, advances, kills and refusals; the runtime's ``write_record``
for heartbeat records), and every read is timed at both sizes with the same live work
(``LIVE`` bets spread over the first stages). History is aged as a fleet accumulates it,
about ``BETS_PER_DAY`` bets a day: heartbeat records and refusals carry start times spread
over that age, and the watchdog's prune (``FLEET_RETENTION_DAYS``) runs before reading,
as it does every few minutes in a running fleet. Transitions are never pruned.

Figures (ratios ``LARGE`` / ``SMALL``, goal <= 1.5; seconds at ``LARGE``):
- ``growth_reads_metrics_cold``: one ``GET /metrics`` with the console's audit cache empty;
- ``growth_reads_pipeline``: one ``GET /pipeline`` page;
- ``growth_reads_status`` / ``growth_reads_audit``: ``fleet status --json`` / ``fleet audit
  --json`` as subprocesses, less ``fleet pipeline`` (the CLI's start-up, no store read);
- ``growth_reads_heartbeat_idle``: one heartbeat of a gate whose stage is empty (goal 1.2);
- ``metrics_cold_s_10k``, ``status_s_10k``: the scrape, and status beyond the floor, at
  ``LARGE`` (goal <= 0.5 s each).
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.bench_enforcer import _db, _pipeline, advance_path
from bench.metrics import Metric, publish, say
from bench.stack import ROOT, bench_stack

SMALL, LARGE = 300, int(os.environ.get("FLEET_BENCH_READS_LARGE", "10000"))
LIVE = 20
BETS_PER_DAY = 27.0  # ~10,000 a year: six scouts' ideas, as in the fleet modelled
BEATS_PER_BET = 1.65
REFUSALS_PER_BET = 0.05
ROUNDS = 5
IDLE_GATE = "ads_signal_reader"  # polls ads_running, where no live bet is put
METRICS = {
    "growth_reads_metrics_cold": "<= 1.5",
    "growth_reads_pipeline": "<= 1.5",
    "growth_reads_status": "<= 1.5",
    "growth_reads_audit": "<= 1.5",
    "growth_reads_heartbeat_idle": "<= 1.2",
    "metrics_cold_s_10k": "<= 0.5",
    "status_s_10k": "<= 0.5",
}


# --- building history --------------------------------------------------------------------


def _finish_one(enforcer: Any, path: list[tuple[str, str]], n: int, rng: random.Random) -> int:
    """Create a bet and walk it to a terminal stage (mostly killed, some scaling); return moves."""
    from fleet.errors import TransitionRefused

    pipeline = enforcer.pipeline
    bet = enforcer.create_bet(pipeline.creators[n % len(pipeline.creators)], {"idea": f"history {n}"})
    steps = path if rng.random() < 0.1 else path[: rng.randrange(0, 6)]
    for to_stage, owner in steps:
        bet = enforcer.advance(bet.bet_id, to_stage, owner, bet.seq, verdict="bench", view=bet)
    if not pipeline.is_terminal(bet.stage):
        kill = next(e for e in pipeline.edges_from(bet.stage) if e.dest == "killed")
        bet = enforcer.advance(bet.bet_id, kill.dest, kill.owner, bet.seq, verdict="bench", view=bet)
    if rng.random() < REFUSALS_PER_BET:  # a late mover on a finished bet: refused, recorded
        with contextlib.suppress(TransitionRefused):  # the refusal is the point
            enforcer.advance(
                bet.bet_id, "source_validated", "source_validation_gate", bet.seq - 1, verdict="late"
            )
    return bet.seq + 1


def _grow(db: Any, finished: int, ages: tuple[float, float], tag: str) -> None:
    """Add ``finished`` finished bets, their heartbeat records and refusals dated ``ages`` days ago
    (a later batch is older history: the bets built first are the fleet's most recent)."""
    from fleet.ledger import Enforcer
    from fleet.runtime.records import write_record
    from fleet.store import clock

    pipeline = _pipeline()
    enforcer = Enforcer(db, pipeline)
    path = advance_path(pipeline)
    now = clock(db).now()
    agents = [owner for _, owner in path]

    def share(worker: int) -> None:
        rng = random.Random(f"{tag}-{worker}")
        for n in range(worker, finished, 4):
            _finish_one(enforcer, path, n, rng)
            for k in range(int(BEATS_PER_BET) + (rng.random() < BEATS_PER_BET % 1)):
                at = now - timedelta(days=rng.uniform(*ages))
                write_record(db, _beat(f"hb-{tag}-{n}-{k}", agents[n % len(agents)], at))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(share, range(4)))
    _age_refusals(db, ages, random.Random(tag))


def _beat(beat_id: str, agent: str, at: Any) -> dict[str, Any]:
    return {
        "_id": beat_id, "agent": agent, "reason": "scheduled", "status": "ok", "started_at": at,
        "finished_at": at + timedelta(seconds=0.5), "duration_s": 0.5, "actions": {"advanced": 1},
        "protocol_version": "1.0", "protocol_hash": "bench", "worker": "bench:1", "bets": [],
    }  # fmt: skip


def _age_refusals(db: Any, ages: tuple[float, float], rng: random.Random) -> None:
    """Spread the refusals made just now over ``ages`` (an ``_id`` write each)."""
    from fleet.constants import REFUSALS
    from fleet.store import clock

    now = clock(db).now()
    for doc in list(db[REFUSALS].find({"at": {"$gte": now - timedelta(hours=1)}}, {"_id": 1})):
        db[REFUSALS].update_one(
            {"_id": doc["_id"]}, {"$set": {"at": now - timedelta(days=rng.uniform(*ages))}}
        )


def _live(db: Any) -> None:
    """``LIVE`` bets spread over the first stages (none where the idle gate polls)."""
    from fleet.ledger import Enforcer

    pipeline = _pipeline()
    enforcer = Enforcer(db, pipeline)
    path = advance_path(pipeline)
    for n in range(LIVE):
        bet = enforcer.create_bet(pipeline.creators[0], {"idea": f"live {n}"})
        for to_stage, owner in path[: n % 5]:
            bet = enforcer.advance(bet.bet_id, to_stage, owner, bet.seq, verdict="bench", view=bet)


def _prune(db: Any) -> None:
    from fleet.ops import retention
    from fleet.settings import load_settings
    from fleet.store import clock

    retention.prune(db, timedelta(days=load_settings().retention_days), clock(db).now())


# --- reading -----------------------------------------------------------------------------


def _median_s(call: Callable[[], object]) -> float:
    call()  # warm up: connections, templates, the tally's first read
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cli(*args: str) -> Callable[[], object]:
    fleet = str(Path(sys.executable).with_name("fleet"))

    def call() -> object:
        return subprocess.run([fleet, *args], cwd=ROOT, capture_output=True, check=True, timeout=600)

    return call


def _reads(db: Any) -> dict[str, float]:
    from starlette.testclient import TestClient

    from fleet.definitions.catalogue import load_registry
    from fleet.runtime.heartbeat import run_heartbeat
    from fleet.runtime.runtime import Runtime
    from fleet.settings import load_settings
    from fleet.web.app import create_app

    settings, registry = load_settings(), load_registry(None, None)
    auth = {"Authorization": "Basic " + base64.b64encode(b"fleet:fleet").decode()}

    def cold_scrape() -> float:
        with TestClient(create_app(settings, registry), headers=auth) as web:  # an empty audit cache
            start = time.perf_counter()
            web.get("/metrics").raise_for_status()
            return time.perf_counter() - start

    cold_scrape()
    found = {"metrics_cold": statistics.median(cold_scrape() for _ in range(ROUNDS))}
    with TestClient(create_app(settings, registry), headers=auth) as web:
        found["pipeline"] = _median_s(lambda: _page(web))
    floor = _median_s(_cli("pipeline"))
    found["status"] = max(_median_s(_cli("status", "--json")) - floor, 0.001)
    found["audit"] = max(_median_s(_cli("audit", "--json")) - floor, 0.001)
    runtime = Runtime.build(settings, registry)
    try:
        found["heartbeat_idle"] = _median_s(lambda: run_heartbeat(runtime, IDLE_GATE, "bench"))
    finally:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)
    found["floor"] = floor
    return found


def _page(web: Any) -> None:
    """The pipeline page as a browser shows it: the page, and the fragment it refreshes."""
    web.get("/pipeline").raise_for_status()
    web.get("/pipeline/live").raise_for_status()


def measure(names: set[str]) -> None:
    from fleet.constants import HEARTBEATS, TRANSITIONS
    from fleet.store import ensure_indexes

    db = _db()
    ensure_indexes(db)
    _live(db)
    results: dict[int, dict[str, float]] = {}
    built = LIVE
    for size in (SMALL, LARGE):
        start = time.perf_counter()
        ages = (built / BETS_PER_DAY, size / BETS_PER_DAY)
        _grow(db, size - built, ages, uuid.uuid4().hex[:6])
        built = size
        _prune(db)
        say(
            f"{size:,} bets: {db[TRANSITIONS].estimated_document_count():,} transitions,"
            f" {db[HEARTBEATS].estimated_document_count():,} heartbeat records after the prune"
            f" (built in {time.perf_counter() - start:.0f}s)"
        )
        results[size] = _reads(db)
        say("  " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in results[size].items()))
    small, large = results[SMALL], results[LARGE]
    for read in ("metrics_cold", "pipeline", "status", "audit", "heartbeat_idle"):
        metric = f"growth_reads_{read}"
        if metric in names:
            detail = f"{large[read] * 1000:.0f} ms at {LARGE:,} vs {small[read] * 1000:.0f} ms at {SMALL:,}"
            publish(Metric(metric, large[read] / small[read], METRICS[metric], detail))
    for metric, read in (("metrics_cold_s_10k", "metrics_cold"), ("status_s_10k", "status")):
        if metric in names:
            detail = f"at {LARGE:,} bets" + (
                f" (beyond the CLI's {large['floor']:.2f}s start-up)" if read == "status" else ""
            )
            publish(Metric(metric, large[read], METRICS[metric], detail))


def run(names: set[str]) -> None:
    with bench_stack("fleet_bench_reads"):
        measure(names)


if __name__ == "__main__":
    run(set(METRICS))
