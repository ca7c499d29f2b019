"""A fanned-out bet runs its heartbeat's steps: time limits, budget, instructions, record window.

In-process runs use the real store and Redis; the time-limit case runs a real worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.agents.usage import record as record_usage
from fleet.constants import HEARTBEAT_PARTS, HEARTBEATS, TRANSITIONS
from fleet.errors import LedgerUnavailable
from fleet.queries import heartbeats_per_agent
from fleet.queries.figures import heartbeat_figures
from fleet.runtime import fanout, records
from fleet.runtime.heartbeat import run_bet, run_heartbeat
from fleet.runtime.runtime import Runtime
from tasks.bet import parse_arguments

from ..conftest import wait_for
from .conftest import FLEETDEF, HERE, TEST_FLEET_ENV, bet_messages
from .test_workers import sending_app

#: The fan-out checker with a 15 s time limit: Celery's soft limit strikes at 12 s.
SHORT_FAN_OUT_ENV = {**TEST_FLEET_ENV, "FLEET_CATALOGUE": f"{FLEETDEF}:SHORT_FAN_OUT"}


def run_parts(runtime: Runtime, redis) -> list[records.HeartbeatRecord]:
    """Run every dispatched bet task in-process, as a worker would."""
    parts = []
    for task_id, args in bet_messages(redis):
        bet = parse_arguments(tuple(args), {})
        parts.append(run_bet(runtime, bet.agent, bet.view, bet.parent, task_id, bet.instructions_hash))
    return parts


def moves(db) -> int:
    return db[TRANSITIONS].count_documents({"seq": {"$gt": 0}})


def capped_protocols(tmp_path: Path, agent: str, usd: float) -> Path:
    text = (HERE / "protocols" / "fleet.yaml").read_text()
    assert "budgets:" not in text
    (tmp_path / "fleet.yaml").write_text(f"{text}\nbudgets:\n  daily_usd: {{{agent}: {usd}}}\n")
    return tmp_path


def test_an_over_budget_agents_fanned_out_bets_do_not_run(
    fan_runtime, make_bets, redis, db, tmp_path
) -> None:
    # Given eight bets dispatched by the checker while it was within its budget
    bets = make_bets(8)
    run_heartbeat(fan_runtime, "checker", "adhoc", heartbeat_id="hb-1")
    assert len(bet_messages(redis)) == 6
    # When the checker goes over its daily cap before its bet tasks run
    fan_runtime.settings = fan_runtime.settings.model_copy(
        update={"protocols_dir": capped_protocols(tmp_path, "checker", 1.0)}
    )
    record_usage(db, "checker", None, cost_usd=1.5)
    parts = run_parts(fan_runtime, redis)
    # Then no bet task runs its bet: each is recorded skipped as over budget, nothing moved
    assert [p.status for p in parts] == ["skipped"] * 6
    assert all("over budget" in (p.error or "") for p in parts)
    assert moves(db) == 0 and {fan_runtime.enforcer.get(b.bet_id).stage for b in bets} == {"new"}
    # And their in-flight marks are gone: the next heartbeat (after the budget) may send them again
    assert fanout.free_slots(redis, fan_runtime.registry.require("checker")) == 6


def test_a_store_blip_while_a_part_record_is_written_does_not_rerun_the_bet(
    fan_runtime, make_bets, redis, db, monkeypatch
) -> None:
    # Given dispatched bets, and a store that fails the part record's first two writes
    make_bets(8)
    run_heartbeat(fan_runtime, "checker", "adhoc", heartbeat_id="hb-1")
    real_write = records.write_record
    failures = {"left": 2}

    def blip(*args, **kwargs) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise LedgerUnavailable("heartbeat record: store unavailable")
        real_write(*args, **kwargs)

    monkeypatch.setattr(records, "write_record", blip)
    task_id, args = bet_messages(redis)[0]
    bet = parse_arguments(tuple(args), {})
    # When the bet task runs
    part = run_bet(fan_runtime, bet.agent, bet.view, bet.parent, task_id, bet.instructions_hash)
    # Then it returns normally (nothing for Celery to retry), its record is stored after the blip,
    # and the bet moved once
    assert part.status == "ok" and part.actions == {"advanced": 1}
    assert db[HEARTBEAT_PARTS].find_one({"_id": task_id})["status"] == "ok"
    assert moves(db) == 1


def test_a_part_whose_store_stays_down_keeps_its_work_and_loses_only_its_record(
    fan_runtime, make_bets, redis, db, monkeypatch
) -> None:
    make_bets(8)
    run_heartbeat(fan_runtime, "checker", "adhoc", heartbeat_id="hb-1")

    def store_down(*_args, **_kwargs) -> None:
        raise LedgerUnavailable("heartbeat record: store unavailable")

    monkeypatch.setattr(records, "write_record", store_down)
    monkeypatch.setattr(records, "RECORD_WRITE_WINDOW_S", 0.5)
    task_id, args = bet_messages(redis)[0]
    bet = parse_arguments(tuple(args), {})
    part = run_bet(fan_runtime, bet.agent, bet.view, bet.parent, task_id, bet.instructions_hash)
    assert part.status == "ok" and moves(db) == 1
    assert db[HEARTBEAT_PARTS].find_one({"_id": task_id}) is None


def test_part_records_count_as_no_heartbeat(fan_runtime, make_bets, redis, db) -> None:
    # Given one fanned-out heartbeat whose six parts all ran
    make_bets(8)
    run_heartbeat(fan_runtime, "checker", "adhoc", heartbeat_id="hb-1")
    assert [p.status for p in run_parts(fan_runtime, redis)] == ["ok"] * 6
    # Then the heartbeat figures behind fleet_heartbeats_total and the duration histogram,
    # and heartbeats per agent, count one checker heartbeat, not seven
    figures = heartbeat_figures(db)
    assert figures.by_outcome[("checker", "ok")] == 1 and len(figures.durations_s) == 1
    [checker] = heartbeats_per_agent(db, ["checker"])
    assert checker.count == 1
    assert db[HEARTBEATS].count_documents({}) == 1 and db[HEARTBEAT_PARTS].count_documents({}) == 6
    # And the heartbeat's summary still sums its parts
    assert records.parts_summary(db, "hb-1") == {"dispatched": 6, "parts_advanced": 6, "parts": 6}


def test_a_part_skips_its_bet_when_the_instructions_changed_since_its_heartbeat(
    fan_runtime, make_bets, redis, db
) -> None:
    # Given bets dispatched by a heartbeat that ran with no instructions file
    make_bets(8)
    run_heartbeat(fan_runtime, "checker", "adhoc", heartbeat_id="hb-1")
    task_id, args = bet_messages(redis)[0]
    bet = parse_arguments(tuple(args), {})
    # When its bet task runs stamped with other instructions than the agent has now
    part = run_bet(fan_runtime, bet.agent, bet.view, bet.parent, task_id, "0123456789abcdef")
    # Then it does not run the bet on content its heartbeat never recorded
    assert part.status == "skipped" and "instructions changed" in (part.error or "")
    assert moves(db) == 0


@pytest.mark.slow
def test_a_fanned_out_bet_is_stopped_at_its_agents_soft_limit_and_recorded_timeout(
    db, runtime, make_bets, start_worker
) -> None:
    # Given bets whose first external call attempt outlasts the soft limit (13 s against 12 s)
    # and ends before the hard one (15 s): the bet notices the stop before its next attempt
    bets = make_bets(5, lookup_s=13.0, fail_calls=True)
    start_worker(queues="alpha", concurrency=2, **SHORT_FAN_OUT_ENV)
    # When one checker heartbeat fans them out (bet tasks carry no limits: the agent's apply)
    sending_app().send_task("fleet.heartbeat", args=["checker"], kwargs={"reason": "adhoc"}, queue="alpha")
    parts = wait_for(
        lambda: (found := list(db[HEARTBEAT_PARTS].find({}))) and len(found) >= 2 and found,
        90,
        "part records",
    )
    # Then each part stopped at the soft limit: recorded timeout, its bet abandoned, nothing moved
    assert {p["status"] for p in parts} == {"timeout"}, [(p["status"], p["bets"]) for p in parts]
    assert all(entry["outcome"] == "abandoned" for p in parts for entry in p["bets"])
    assert [runtime.enforcer.get(b.bet_id).stage for b in bets] == ["new"] * 5
