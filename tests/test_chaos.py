"""Chaos: the default fleet under beat in compressed time while workers, Redis and the store die.

150 seeded bets, 3 workers serving every queue, 20 % of simulated external calls
failing. A worker is SIGKILLed (with its children) every few seconds and replaced;
Redis is restarted once, the store once. Then everything stops and the ledger is
checked: no bet lost, every record on the map and by its owner, projections equal
records, no live claim left, no bet created twice by a retried heartbeat. The figures
are printed (``pytest -s``). ``CHAOS_MINUTES`` sets the length (default 3).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleet.constants import BETS, BETS_DONE, CLAIMS, HEARTBEATS, TRANSITIONS
from fleet.defaults.sim import IDEAS_PER_SCOUT
from fleet.definitions.catalogue import Registry, load_registry
from fleet.ledger import Enforcer
from fleet.ops import services as svc

from .conftest import ROOT, Stack, Worker, wait_for

pytestmark = pytest.mark.slow

BETS_SEEDED = 150
WORKERS = 3
#: Heartbeat records the fleet stores between two kills: each kill comes after visible progress
#: (about one every 8 s on a 2-core machine), so the fleet is killed while it works, not idle.
PROGRESS_PER_KILL = 15
#: Longest the fleet may go without that progress: a fleet that stops working fails the test.
PROGRESS_DEADLINE_S = 120.0
#: One fleet day in seconds: every agent runs several times a minute.
DAY_SECONDS = 120.0
#: Leases scaled to compressed time: the agent lock's and the claims'.
LOCK_TTL_S = 5
CLAIM_TTL_S = 10


@pytest.fixture
def chaos_env(stack: Stack, tmp_path: Path) -> dict[str, str]:
    """The default fleet, compressed time, failing calls, short leases."""
    protocols = tmp_path / "protocols"
    protocols.mkdir()
    text = (ROOT / "protocols" / "fleet.yaml").read_text()
    (protocols / "fleet.yaml").write_text(text.replace("claim_ttl_s: 300", f"claim_ttl_s: {CLAIM_TTL_S}"))
    return {
        **stack.env,
        "FLEET_PROTOCOLS_DIR": str(protocols),
        "FLEET_DAY_SECONDS": str(DAY_SECONDS),
        "FLEET_SIM_FAILURE_RATE": "0.2",
        "FLEET_LOCK_TTL_S": str(LOCK_TTL_S),
    }


@pytest.fixture
def default_registry() -> Registry:
    return load_registry(None, None)


@pytest.fixture
def beat(chaos_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], None]]:
    """Start Celery beat (the caller decides when); stopped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "fleet", "beat", "-s", str(tmp_path / "schedule")]
        with (tmp_path / "beat.log").open("ab") as log:
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env={**os.environ, **chaos_env},
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            )

    yield start
    for proc in procs:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _progressed(db, target: int) -> int:
    """Wait until the fleet has stored ``target`` heartbeat records; return how many it has."""

    def stored() -> int:
        n = db[HEARTBEATS].count_documents({})
        return n if n >= target else 0

    return int(wait_for(stored, PROGRESS_DEADLINE_S, "the fleet to store heartbeats between kills"))


def restart(stack: Stack, name: str) -> None:
    (service,) = [s for s in stack.services if s.name == name]
    svc.stop(service)
    svc.STARTERS[name](service)


def test_the_fleet_loses_nothing_while_workers_redis_and_the_store_die(
    stack, db, redis, chaos_env, default_registry, beat, start_worker
) -> None:
    minutes = float(os.environ.get("CHAOS_MINUTES", "3"))
    registry = default_registry
    enforcer = Enforcer(db, registry.pipeline)
    creators = registry.pipeline.creators
    seeded = [
        enforcer.create_bet(creators[i % len(creators)], {"idea": f"chaos {i}"}).bet_id
        for i in range(BETS_SEEDED)
    ]
    queues = ",".join(sorted({"ops", *registry.queues()}))
    alive: list[Worker] = [start_worker(queues, 2, f"w{n}", **chaos_env) for n in range(WORKERS)]
    beat()
    # When workers are SIGKILLed every few seconds, and Redis and the store restart once each
    rng = random.Random(7)
    kills, started, events = 0, time.monotonic(), {"redis": 1 / 3, "ferretdb": 2 / 3}
    restarted: list[str] = []
    recorded = db[HEARTBEATS].count_documents({})
    while (elapsed := time.monotonic() - started) < minutes * 60:
        recorded = _progressed(db, recorded + PROGRESS_PER_KILL)
        victim = alive.pop(rng.randrange(len(alive)))
        victim.stop(signal.SIGKILL)
        kills += 1
        alive.append(start_worker(queues, 2, f"w{WORKERS + kills}", **chaos_env))
        for name, at in list(events.items()):
            if elapsed >= at * minutes * 60:
                restart(stack, name)
                del events[name]
                restarted.append(name)
    for worker in alive:
        worker.stop()  # warm shutdown: running heartbeats finish
    # Then every lease a killed worker held lapses within one claim TTL
    wait_for(lambda: not _live_claims(db), CLAIM_TTL_S * 3, "the killed workers' leases to lapse")
    # And the ledger is whole
    repaired = enforcer.repair_all()
    violations = enforcer.verify()
    figures = {"services restarted": restarted, **_figures(db, registry, seeded, kills, repaired)}
    print("\n" + "\n".join(f"{k}: {v}" for k, v in figures.items()))
    assert violations == [], violations[:5]
    assert restarted == ["redis", "ferretdb"]
    assert figures["bets lost"] == 0
    assert figures["live claims left"] == 0
    assert figures["creating heartbeats over their quota"] == 0
    assert figures["bets at an unknown stage"] == 0
    assert figures["heartbeats run"] > 0 and figures["transitions (moves)"] > 0


def _figures(db, registry: Registry, seeded: list[str], kills: int, repaired: int) -> dict[str, object]:
    stages = {stage.name for stage in registry.pipeline.stages}
    # Live bets and finished ones (a projection at a terminal stage moves to BETS_DONE).
    bets = {doc["_id"]: doc["stage"] for name in (BETS_DONE, BETS) for doc in db[name].find({}, {"stage": 1})}
    statuses = Counter(doc["status"] for doc in db[HEARTBEATS].find({}, {"status": 1}))
    creations = Counter(
        doc["heartbeat_id"]
        for doc in db[TRANSITIONS].find({"seq": 0}, {"heartbeat_id": 1})
        if doc.get("heartbeat_id")
    )
    terminal = {stage.name for stage in registry.pipeline.stages if stage.terminal}
    gate = next(t.owner for t in registry.pipeline.edges_from(registry.pipeline.initial_stage))
    gate_runs = list(db[HEARTBEATS].find({"agent": gate}, {"status": 1, "actions": 1}))
    gate_claimed = sum(run.get("actions", {}).get("claimed", 0) for run in gate_runs)
    return {
        "workers SIGKILLed": kills,
        "heartbeats run": sum(statuses.values()),
        "heartbeats by status": dict(statuses),
        "skipped behind a held lock": statuses.get("skipped", 0),
        "transitions (moves)": db[TRANSITIONS].count_documents({"seq": {"$gt": 0}}),
        "bets created by scouts": sum(creations.values()),
        "creating heartbeats over their quota": sum(n > IDEAS_PER_SCOUT for n in creations.values()),
        "bets lost": sum(bet_id not in bets for bet_id in seeded),
        "bets at an unknown stage": sum(stage not in stages for stage in bets.values()),
        "bets terminal": sum(stage in terminal for stage in bets.values()),
        "bets per stage": dict(Counter(bets.values())),
        f"first gate ({gate}) heartbeats / skipped / bets claimed": (
            f"{len(gate_runs)} / {sum(run['status'] == 'skipped' for run in gate_runs)} / {gate_claimed}"
        ),
        "projections repaired at the end": repaired,
        "live claims left": len(_live_claims(db)),
    }


def _live_claims(db) -> list[dict]:
    now = datetime.now(UTC)
    unreleased = db[CLAIMS].find({"released_at": None})
    return [claim for claim in unreleased if claim["expires_at"].replace(tzinfo=UTC) > now]
