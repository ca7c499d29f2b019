"""The ops agents of the default fleet, through real heartbeats in-process.

The CEO's audit turns drift and stranded bets into board tasks that close
themselves once resolved; the watchdog repairs bet projections.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.constants import BETS
from fleet.defaults.catalogue import CATALOGUE
from fleet.definitions.catalogue import Registry, validate_catalogue
from fleet.definitions.pipeline import load_pipeline
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.runtime import Runtime
from fleet.settings import load_settings

from ..conftest import ROOT, wait_for

#: The version the drifting spec was written for: an older one, in the protocols' history.
OLD_VERSION = "0.9"


def default_fleet(**versions: str) -> Registry:
    """The default catalogue, with ``agent=version`` overriding some specs' protocol version."""
    data = copy.deepcopy(CATALOGUE)
    for row in data["agents"]:
        row["protocol_version"] = versions.get(row["name"], row["protocol_version"])
    return validate_catalogue(data, load_pipeline(None), "test fleet")


def write_protocols(directory: Path, **changes: Any) -> Path:
    """The repository's protocols with fast retries, ``0.9`` in the history, and ``changes``."""
    data = yaml.safe_load((ROOT / "protocols" / "fleet.yaml").read_text())
    data["retry"] = {"attempts": 3, "initial_delay_s": 0.01, "max_delay_s": 0.05, "jitter_s": 0.0}
    data["history"] = [{"version": OLD_VERSION, "summary": "before the retry policy was shared"}]
    data.update(changes)
    (directory / "fleet.yaml").write_text(yaml.safe_dump(data))
    return directory


@pytest.fixture
def make_runtime(db: Any, redis: Any, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Factory: an in-process runtime over the clean test database for a given fleet and protocols."""
    built: list[Runtime] = []

    def make(registry: Registry | None = None, **protocol_changes: Any) -> Runtime:
        directory = write_protocols(tmp_path, **protocol_changes)
        settings = load_settings().model_copy(update={"protocols_dir": directory})
        runtime = Runtime.build(settings, registry or default_fleet())
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)


def test_a_healthy_fleet_gives_the_ceo_nothing_to_file(make_runtime) -> None:
    runtime = make_runtime()
    record = run_heartbeat(runtime, "ceo")
    assert record.status == "ok", record.error
    assert {k: v for k, v in record.actions.items() if v} == {}
    assert runtime.board.open_tasks() == []


def test_a_drifting_spec_gets_exactly_one_task_however_often_the_ceo_runs(make_runtime) -> None:
    # Given the blog writer's spec still written for an older protocol version
    runtime = make_runtime(default_fleet(blog_writer=OLD_VERSION))
    # When the CEO runs three heartbeats
    records = [run_heartbeat(runtime, "ceo") for _ in range(3)]
    # Then each saw the drift, the first filed one task, and exactly one is open
    assert [r.status for r in records] == ["ok"] * 3
    assert [r.actions["drift"] for r in records] == [1, 1, 1]
    assert [r.actions.get("filed", 0) for r in records] == [1, 0, 0]
    (task,) = runtime.board.open_tasks("drift")
    assert "blog_writer" in f"{task.dedupe_key} {task.title} {task.detail}"
    assert task.filed_by == "ceo"


def test_the_drift_task_closes_itself_once_the_spec_is_updated(make_runtime) -> None:
    # Given an open drift task for the blog writer
    runtime = make_runtime(default_fleet(blog_writer=OLD_VERSION))
    run_heartbeat(runtime, "ceo")
    (task,) = runtime.board.open_tasks("drift")
    # When its spec is brought up to date and the CEO runs again
    runtime.registry = default_fleet()
    record = run_heartbeat(runtime, "ceo")
    # Then the audit finds no drift and the task is closed as resolved
    assert record.actions["drift"] == 0 and record.actions["closed"] == 1
    assert runtime.board.open_tasks("drift") == []
    assert not runtime.board.get(task.task_id).is_open


def test_a_bet_waiting_past_its_sla_gets_a_stranded_task_until_it_moves(make_runtime) -> None:
    # Given a stage SLA of under a second, and a bet waiting there
    sla = timedelta(seconds=0.5)
    runtime = make_runtime(stage_sla_hours={"sourced": sla.total_seconds() / 3600})
    bet = runtime.enforcer.create_bet("reddit_scout", {"idea": "stranded"})
    wait_for(lambda: datetime.now(UTC) - bet.updated_at > 2 * sla, 10, "the SLA to pass")
    # When the CEO runs
    found = run_heartbeat(runtime, "ceo")
    # Then it files one stranded task about the bet
    assert found.actions["stranded"] == 1 and found.actions["filed"] == 1
    (task,) = runtime.board.open_tasks("stranded")
    assert bet.bet_id in f"{task.dedupe_key} {task.title} {task.detail}"
    # And once the bet's owner moves it on, the next audit closes the task
    runtime.enforcer.advance(
        bet.bet_id, "source_validated", "source_validation_gate", bet.seq, verdict="pass"
    )
    resolved = run_heartbeat(runtime, "ceo")
    assert resolved.actions["stranded"] == 0 and resolved.actions["closed"] == 1
    assert runtime.board.open_tasks("stranded") == []


def test_the_watchdog_repairs_broken_projections(make_runtime) -> None:
    # Given three bets: one projection deleted, one unreadable, one intact
    runtime = make_runtime()
    deleted, corrupt, intact = (
        runtime.enforcer.create_bet("forum_scout", {"idea": f"idea {i}"}) for i in range(3)
    )
    runtime.db[BETS].delete_one({"_id": deleted.bet_id})
    runtime.db[BETS].update_one({"_id": corrupt.bet_id}, {"$set": {"seq": "not a number"}})
    assert runtime.enforcer.verify() != []
    # When the watchdog runs, then runs again
    first = run_heartbeat(runtime, "ops_watchdog")
    second = run_heartbeat(runtime, "ops_watchdog")
    # Then the first run repaired both, the ledger verifies, and there was nothing left to do
    assert first.status == "ok" and first.actions["repaired"] == 2
    assert second.actions.get("repaired", 0) == 0
    assert runtime.enforcer.verify() == []
    assert runtime.db[BETS].count_documents({}) == 3
    assert runtime.enforcer.get(intact.bet_id) == intact


def test_bumping_the_protocol_version_files_one_task_per_affected_agent(make_runtime) -> None:
    # Given protocols bumped to 1.1 while every spec still says 1.0
    history = [{"version": "1.0", "summary": "before 1.1"}, {"version": "0.9", "summary": "the first"}]
    runtime = make_runtime(version="1.1", history=history)
    # When the CEO runs several heartbeats
    for _ in range(3):
        record = run_heartbeat(runtime, "ceo")
        assert record.status == "ok", record.error
    # Then every agent has exactly one open drift task
    assignees = [task.assignee for task in runtime.board.open_tasks("drift")]
    assert sorted(assignees) == sorted(runtime.registry.names())


def test_a_worker_running_an_old_protocols_file_is_found_from_its_heartbeats(make_runtime, tmp_path) -> None:
    # Given a heartbeat that ran under an older copy of the protocols file (a stale worker)
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    stale = make_runtime()
    stale.settings = stale.settings.model_copy(
        update={"protocols_dir": write_protocols(old_dir, handoff_rules=["an older rule set"])}
    )
    old = run_heartbeat(stale, "uptime_monitor")
    # And the rest of the fleet already on the current file
    runtime = make_runtime()
    current = run_heartbeat(runtime, "blog_writer")
    assert old.protocol_hash != current.protocol_hash
    run_heartbeat(stale, "uptime_monitor")  # the stale worker keeps running after the change
    # When the CEO audits
    record = run_heartbeat(runtime, "ceo")
    # Then it finds the stale worker and files a task for that agent
    assert record.actions["drift"] >= 1
    tasks = runtime.board.open_tasks("drift")
    assert any(t.assignee == "uptime_monitor" and old.protocol_hash in str(t.detail) for t in tasks)


def test_findings_no_agent_owns_go_to_the_auditing_agent_whatever_its_name(make_runtime) -> None:
    # Given a fleet whose CEO is called "chief", and an SLA override for a stage that does not exist
    data = copy.deepcopy(CATALOGUE)
    for row in data["agents"]:
        if row["name"] == "ceo":
            row["name"] = "chief"
    runtime = make_runtime(
        validate_catalogue(data, load_pipeline(None), "renamed"), stage_sla_hours={"nowhere": 1}
    )
    # When the chief audits
    record = run_heartbeat(runtime, "chief")
    # Then the protocols finding is the chief's task, not one for an agent that does not exist
    assert record.status == "ok", record.error
    (task,) = runtime.board.open_tasks("drift")
    assert "nowhere" in task.title and task.assignee == "chief"
