"""The daily cap is a hard cap: $0.40 bets against $1.00, however the bets are run.

Each bet's expected cost is reserved before it starts (fleet.agents.budget). Both estimate
sources are used: the protocols' ``per_bet_usd`` and the agent's recent mean. The stated
worst case (README, "Usage and budgets") is what bets running at once report above their
estimates: none here (every bet reports exactly its estimate), so spend never passes $1.00.
"""

from __future__ import annotations

import copy
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from fleet.agents import budget, usage
from fleet.constants import HEARTBEAT_PARTS, HEARTBEATS
from fleet.defaults.catalogue import CATALOGUE
from fleet.definitions.catalogue import Registry, validate_catalogue
from fleet.definitions.pipeline import load_pipeline
from fleet.definitions.protocols import load_protocols
from fleet.errors import OverBudget
from fleet.ledger import Enforcer
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.runtime import Runtime
from fleet.settings import load_settings
from fleet.store import Document, clock
from tests.conftest import ROOT, wait_for
from tests.mcp.conftest import SECRET, McpServer

GATE = "source_validation_gate"
AGENT = ROOT / "examples" / "deterministic_agent.py"
CAP, COST = 1.0, 0.4
#: README: spend stays within the cap plus what bets running at once report above their estimates.
WORST_CASE_ABOVE_CAP = 0.0


def protocols(tmp_path: Path, per_bet: bool) -> Path:
    text = (ROOT / "protocols" / "fleet.yaml").read_text()
    caps = f"daily_usd: {{{GATE}: {CAP}}}" + (f"\n  per_bet_usd: {{{GATE}: {COST}}}" if per_bet else "")
    (tmp_path / "fleet.yaml").write_text(text.replace("daily_usd: {}", caps))
    return tmp_path


def spending_registry(batch_size: int) -> Registry:
    data = copy.deepcopy(CATALOGUE)
    for spec in data["agents"]:
        if spec["name"] == GATE:
            spec["handler"] = {"command": [sys.executable, str(AGENT), "spend", str(COST)], "timeout_s": 30}
            spec["batch_size"] = batch_size
    return validate_catalogue(data, load_pipeline(None), "test")


def make_bets(db: Database[Document], n: int) -> None:
    pipeline = load_pipeline(None)
    enforcer = Enforcer(db, pipeline)
    for i in range(n):
        enforcer.create_bet(pipeline.creators[0], {"idea": f"bet {i}"})


def spent(db: Database[Document]) -> float:
    return usage.spend(db, GATE, usage.day_start(clock(db).now())).get(GATE, 0.0)


@pytest.mark.parametrize("per_bet", [True, False], ids=["per_bet_usd", "recent-mean"])
@pytest.mark.parametrize(
    ("bets", "batch_size", "heartbeats"), [(5, 1, 5), (6, 6, 1)], ids=["one-per-beat", "batch-of-6"]
)
def test_spend_stays_within_the_cap(
    db: Database[Document], redis: Any, agent_env: None, tmp_path: Path,
    per_bet: bool, bets: int, batch_size: int, heartbeats: int,
) -> None:  # fmt: skip
    # Given bets waiting for a command agent that reports $0.40 per bet, capped at $1.00 a day
    make_bets(db, bets)
    settings = load_settings().model_copy(update={"protocols_dir": protocols(tmp_path, per_bet)})
    runtime = Runtime.build(settings, spending_registry(batch_size))
    try:
        # When its heartbeats run (one bet each, or the whole batch in one)
        records = [run_heartbeat(runtime, GATE, "adhoc") for _ in range(heartbeats)]
    finally:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)
    # Then spend never passes the cap; the bets that did not fit were not started, nor failed
    assert spent(db) <= CAP + WORST_CASE_ABOVE_CAP
    outcomes = [entry["outcome"] for record in records for entry in record.bets]
    assert "over_budget" in outcomes and "failed" not in outcomes
    assert outcomes.count("deferred") == round(spent(db) / COST)
    assert db["failures"].count_documents({}) == 0


def _one_bet(db: Database[Document], redis: Any, loaded: Any, go: threading.Barrier, member: str) -> None:
    go.wait()
    try:
        held = budget.reserve(redis, db, loaded, GATE, member, 30)
    except OverBudget:
        return
    usage.record(db, GATE, "hb", cost_usd=COST, bet_id=member)
    assert held is not None
    held.release()


def test_concurrent_reservations_never_pass_the_cap(
    db: Database[Document], redis: Any, tmp_path: Path
) -> None:
    # Given 10 workers' threads starting $0.40 bets of one agent at the same moment, 10 times over
    loaded = load_protocols(protocols(tmp_path, per_bet=True))
    for round_ in range(10):
        db["usage"].delete_many({})
        redis.flushdb()
        go = threading.Barrier(10)
        args = [(db, redis, loaded, go, f"r{round_}-b{i}") for i in range(10)]
        threads = [threading.Thread(target=_one_bet, args=a) for a in args]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then at most two of them ran: $0.80 of $1.00
        assert spent(db) <= CAP + WORST_CASE_ABOVE_CAP
        assert round(spent(db) / COST) == 2


def test_a_bet_that_reports_above_its_estimate_is_counted_and_flagged(
    db: Database[Document], redis: Any, agent_env: None, tmp_path: Path
) -> None:
    # Given an estimate of $0.10 a bet and a program that reports $0.40
    text = (ROOT / "protocols" / "fleet.yaml").read_text()
    (tmp_path / "fleet.yaml").write_text(
        text.replace("daily_usd: {}", f"daily_usd: {{{GATE}: {CAP}}}\n  per_bet_usd: {{{GATE}: 0.1}}")
    )
    make_bets(db, 1)
    runtime = Runtime.build(
        load_settings().model_copy(update={"protocols_dir": tmp_path}), spending_registry(1)
    )
    try:
        record = run_heartbeat(runtime, GATE, "adhoc")
    finally:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)
    # Then all of it counts, and the record says it went over its estimate
    (entry,) = record.bets
    assert (entry["cost_usd"], entry["reserved_usd"]) == (COST, 0.1)
    assert record.actions.get("over_estimate") == 1 and spent(db) == COST


@pytest.mark.slow
def test_fan_out_over_four_worker_processes_stays_within_the_cap(
    db: Database[Document], redis: Any, mcp_server: McpServer, start_worker: Any, tmp_path: Path
) -> None:
    from fleet.app.celery_app import make_app

    # Given 10 bets, a gate fanned out 10 at once and 5 per heartbeat, $0.40 a bet against $1.00
    make_bets(db, 10)
    capped = str(protocols(tmp_path, True))
    env = {"FLEET_CATALOGUE": "tests.mcp.fleetdef:SPENDING", "FLEET_MCP_SECRET": SECRET,
           "FLEET_MCP_URL": mcp_server.url, "FLEET_PROTOCOLS_DIR": capped}  # fmt: skip
    start_worker(queues="validation", concurrency=4, **env)
    app = make_app(load_settings())
    # When two polling heartbeats run back to back
    for n in (1, 2):
        app.send_task("fleet.heartbeat", args=[GATE], queue="validation")
        wait_for(lambda n=n: db[HEARTBEATS].count_documents({"agent": GATE}) >= n, 120, f"heartbeat {n}")
    wait_for(lambda: _parts_done(db), 180, "every dispatched bet's part record")
    # Then spend never passed the cap, and bets beyond it were left as over budget
    assert spent(db) <= CAP + WORST_CASE_ABOVE_CAP
    outcomes = [e["outcome"] for doc in db[HEARTBEAT_PARTS].find({}) for e in doc.get("bets", [])]
    assert "over_budget" in outcomes and "failed" not in outcomes


def _parts_done(db: Database[Document]) -> bool:
    beats = list(db[HEARTBEATS].find({"agent": GATE}))
    sent = sum(1 for doc in beats for e in doc.get("bets", []) if e["outcome"] == "dispatched")
    return db[HEARTBEAT_PARTS].count_documents({}) >= sent > 0
