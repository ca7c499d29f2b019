"""A refusal loop is caught the day it starts: found, filed once, held back, closed once fixed.

A custom pipeline (hiring) and a deliberately misbehaving handler, run in-process against
real FerretDB and Redis, with the real CEO heartbeat doing the audit.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.board import Origin
from fleet.constants import HOLDS, REFUSALS
from fleet.definitions.catalogue import load_registry
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.runtime import Runtime
from fleet.settings import Settings

from ..conftest import wait_for
from .conftest import HERE

HIRING = "tests.runtime.hiring"
THRESHOLD = 2
WINDOW_H = 0.002  # 7.2 s: long enough for the loop to build, short enough to see it end


@pytest.fixture
def protocols_dir(tmp_path: Path) -> Path:
    shutil.copy(HERE / "protocols" / "fleet.yaml", tmp_path / "fleet.yaml")
    data = yaml.safe_load((tmp_path / "fleet.yaml").read_text())
    data["escalation"].update(refusal_loop_threshold=THRESHOLD, refusal_loop_window_h=WINDOW_H)
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path


def build(settings: Settings, protocols_dir: Path, catalogue: str) -> Runtime:
    registry = load_registry(f"{HIRING}:{catalogue}", f"{HIRING}:PIPELINE")
    return Runtime.build(settings.model_copy(update={"protocols_dir": protocols_dir}), registry)


@pytest.fixture
def runtimes(db: Any, redis: Any, settings: Settings, protocols_dir: Path) -> Any:
    built: list[Runtime] = []

    def make(catalogue: str) -> Runtime:
        rt = build(settings, protocols_dir, catalogue)
        built.append(rt)
        return rt

    yield make
    for rt in built:
        rt.pool.shutdown(wait=True)
        rt.bet_pool.shutdown(wait=True)


def loop_tasks(rt: Runtime) -> list[Any]:
    return rt.board.open_tasks(Origin.REFUSAL_LOOP)


def test_a_refusal_loop_is_held_back_filed_once_and_closed_once_fixed(runtimes) -> None:
    rt = runtimes("CHEATING")
    # Given 5 candidates whose interview the interviewer will try to skip, and 3 honest ones
    cheats = [rt.enforcer.create_bet("recruiter", {"cheat": True}).bet_id for _ in range(5)]
    honest = [rt.enforcer.create_bet("recruiter", {}).bet_id for _ in range(3)]
    run_heartbeat(rt, "screener")
    assert {rt.enforcer.get(b).stage for b in cheats + honest} == {"screened"}
    # When the interviewer's heartbeats run until every cheating move is held back
    records = []
    for _ in range(12):
        records.append(run_heartbeat(rt, "interviewer"))
        if rt.db[HOLDS].count_documents({"agent": "interviewer"}) == len(cheats):
            break
    # Then nothing illegal happened, the honest candidates moved on, the cheats are held back
    assert {rt.enforcer.get(b).stage for b in cheats} == {"screened"}
    assert {rt.enforcer.get(b).stage for b in honest} == {"interviewed"}
    assert {doc["bet_id"] for doc in rt.db[HOLDS].find({"agent": "interviewer"})} == set(cheats)
    # And a held bet is no longer offered to the agent: the next heartbeat looks at none of them
    after = run_heartbeat(rt, "interviewer")
    assert not {b["bet_id"] for b in after.bets} & set(cheats)
    assert after.actions["held"] == len(cheats)
    refusals = rt.db[REFUSALS].count_documents({"agent": "interviewer"})
    assert run_heartbeat(rt, "interviewer").status == "ok"
    assert rt.db[REFUSALS].count_documents({"agent": "interviewer"}) == refusals  # the loop stopped

    # When the CEO's heartbeat runs (once, twice)
    ceo = run_heartbeat(rt, "chief")
    assert ceo.status == "ok", ceo.error
    run_heartbeat(rt, "chief")
    # Then exactly one task names the agent, the move, the reason, the bets and the allowed moves
    [task] = loop_tasks(rt)
    assert task.assignee == "hiring_lead"
    assert task.detail["agent"] == "interviewer" and task.detail["move"] == "screened -> hired"
    assert task.detail["reason"] == "illegal transition"  # screened -> hired is no edge at all
    assert set(task.detail["bets"]) == set(cheats)
    assert {m["to_stage"] for m in task.detail["allowed_moves"]} == {"interviewed", "rejected"}

    # When the handler is fixed (the spec names the fixed handler)
    fixed = runtimes("FIXED")
    wait_for(
        lambda: (
            run_heartbeat(fixed, "interviewer")
            and all(fixed.enforcer.get(b).stage == "interviewed" for b in cheats)
        ),
        30,
        "the held bets to be offered again and moved",
    )
    # Then once the loop's refusals are out of the window, the CEO closes the task itself
    wait_for(lambda: run_heartbeat(fixed, "chief") and not loop_tasks(fixed), 60, "the loop task to close")
    assert fixed.enforcer.verify() == []


def test_a_lost_race_is_not_a_loop(runtimes) -> None:
    rt = runtimes("CHEATING")
    now = rt.enforcer.ledger.now()
    for n in range(10):
        rt.db[REFUSALS].insert_one(
            {"bet_id": f"b{n % 2}", "agent": "interviewer", "from_stage": "screened",
             "to_stage": "interviewed", "expected_seq": 1, "reason": "stale bet (lost race)",
             "error": "StaleBet", "detail": "",
             "heartbeat_id": None, "protocol_version": None, "protocol_hash": None, "at": now}
        )  # fmt: skip
    assert run_heartbeat(rt, "chief").status == "ok"
    assert loop_tasks(rt) == []
