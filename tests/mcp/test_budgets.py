"""Daily budgets: an agent whose reported spend reached its cap skips its heartbeats."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from fleet.agents.context import BetContext, Decision
from fleet.agents.usage import record, record_reported, spend
from fleet.defaults.catalogue import CATALOGUE
from fleet.definitions.catalogue import get_registry, validate_catalogue
from fleet.definitions.pipeline import load_pipeline
from fleet.definitions.protocols import load_protocols
from fleet.errors import FleetError
from fleet.ledger import Bet, Enforcer
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.runtime import Runtime
from fleet.settings import load_settings
from fleet.store import Document
from tests.conftest import ROOT

GATE = "source_validation_gate"


@pytest.fixture
def capped(tmp_path: Path) -> Path:
    """A protocols folder capping the gate at $1.00 a day."""
    text = (ROOT / "protocols" / "fleet.yaml").read_text()
    (tmp_path / "fleet.yaml").write_text(text.replace("daily_usd: {}", f"daily_usd: {{{GATE}: 1.0}}"))
    return tmp_path


def beat(db: Database[Document], protocols: Path) -> tuple[Any, Runtime]:
    settings = load_settings().model_copy(update={"protocols_dir": protocols})
    runtime = Runtime.build(settings, get_registry())
    try:
        return run_heartbeat(runtime, GATE, "adhoc"), runtime
    finally:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)


def test_an_agent_over_its_budget_skips_and_one_task_is_filed(
    db: Database[Document], redis: Any, capped: Path, bet: Bet
) -> None:
    assert load_protocols(capped).protocols.budgets.daily_usd == {GATE: 1.0}
    record(db, GATE, None, tokens_in=1000, tokens_out=100, cost_usd=0.6)
    first, _ = beat(db, capped)
    assert first.status == "ok"  # $0.60 of $1.00: it runs
    record(db, GATE, None, cost_usd=0.5)
    skipped, runtime = beat(db, capped)
    again, _ = beat(db, capped)
    assert (skipped.status, again.status) == ("skipped", "skipped")
    assert "over budget: spent $1.10 of $1.00" in (skipped.error or "")
    tasks = [t for t in runtime.board.open_tasks() if t.dedupe_key == f"over-budget:{GATE}"]
    assert len(tasks) == 1 and tasks[0].assignee == "operator"
    assert spend(db, None, skipped.started_at.replace(hour=0, minute=0, second=0, microsecond=0)) == {
        GATE: 1.1
    }


def test_an_uncapped_agent_is_never_skipped(db: Database[Document], redis: Any, bet: Bet) -> None:
    record(db, GATE, None, cost_usd=1000.0)
    result, _ = beat(db, ROOT / "protocols")
    assert result.status == "ok"


@pytest.mark.parametrize("bad", [{"cost_usd": -1}, {"tokens_in": "many"}, {"dollars": 3}, [1, 2]])
def test_bad_usage_reports_are_refused_and_record_nothing(db: Database[Document], bad: Any) -> None:
    with pytest.raises(FleetError):
        record_reported(db, GATE, None, bad)
    assert db["usage"].count_documents({}) == 0


def test_a_negative_budget_is_an_invalid_protocols_file(tmp_path: Path) -> None:
    text = (ROOT / "protocols" / "fleet.yaml").read_text()
    (tmp_path / "fleet.yaml").write_text(text.replace("daily_usd: {}", f"daily_usd: {{{GATE}: -1}}"))
    with pytest.raises(FleetError, match="must not be negative"):
        load_protocols(tmp_path)


def test_enforcer_is_untouched_by_a_skipped_heartbeat(
    db: Database[Document], redis: Any, capped: Path, bet: Bet
) -> None:
    record(db, GATE, None, cost_usd=5.0)
    beat(db, capped)
    assert Enforcer(db, get_registry().pipeline).get(bet.bet_id).seq == 0


def test_fleet_agents_shows_spend_today_and_the_handler_kind(db: Database[Document], redis: Any) -> None:
    from tests.cli.conftest import invoke

    record(db, GATE, None, cost_usd=0.25)
    record(db, GATE, "hb", cost_usd=0.5)
    rows = {row["name"]: row for row in invoke("agents", "--json").json()}
    assert rows[GATE]["spend_today_usd"] == 0.75 and rows[GATE]["handler_kind"] == "python"
    assert rows["category_economics_gate"]["spend_today_usd"] == 0
    assert "$0.75" in invoke("agents").out


def spending_gate(ctx: BetContext) -> Decision:
    """A Python handler that reports $0.60 of model usage per bet and leaves the bet."""
    ctx.report_usage(tokens_in=500, tokens_out=50, cost_usd=0.6, model="test")
    return Decision.stay("thinking")


def test_a_python_handler_reports_usage_and_is_stopped_by_its_budget(
    db: Database[Document], redis: Any, capped: Path, bet: Bet
) -> None:
    data = copy.deepcopy(CATALOGUE)
    for spec in data["agents"]:
        if spec["name"] == GATE:
            spec["handler"] = "tests.mcp.test_budgets:spending_gate"
    registry = validate_catalogue(data, load_pipeline(None), "test")
    settings = load_settings().model_copy(update={"protocols_dir": capped})
    runtime = Runtime.build(settings, registry)
    try:
        records = [run_heartbeat(runtime, GATE, "adhoc") for _ in range(3)]
    finally:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)
    # $0.60 spent; a second $0.60 bet would reach $1.20, over the $1.00 cap: it is never started
    assert [r.status for r in records] == ["ok", "ok", "ok"]
    assert [r.bets[0]["outcome"] for r in records] == ["deferred", "over_budget", "over_budget"]
    assert records[0].bets[0]["cost_usd"] == 0.6
    assert db["usage"].count_documents({"agent": GATE, "model": "test"}) == 1
    assert Enforcer(db, registry.pipeline).get(bet.bet_id).seq == 0


def test_fleet_status_shows_spend_per_agent_today(db: Database[Document], redis: Any) -> None:
    from tests.cli.conftest import invoke

    record(db, GATE, None, cost_usd=0.25)
    assert invoke("status", "--json").json()["spend_today"] == {GATE: 0.25}
    assert f"{GATE} $0.25" in invoke("status").out
