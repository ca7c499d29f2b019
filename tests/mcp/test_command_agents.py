"""Command-line agents run by real heartbeats against the real ``fleet mcp`` process."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from pymongo.database import Database

from fleet.constants import FAILURES, USAGE
from fleet.defaults.catalogue import CATALOGUE
from fleet.definitions.catalogue import Registry, validate_catalogue
from fleet.definitions.pipeline import load_pipeline
from fleet.ledger import Bet
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.records import HeartbeatRecord
from fleet.runtime.runtime import Runtime
from fleet.settings import get_settings, load_settings
from fleet.store import Document
from tests.conftest import ROOT, wait_for
from tests.mcp.conftest import SECRET, McpServer

GATE = "source_validation_gate"
AGENT = ROOT / "examples" / "deterministic_agent.py"


def registry_with(command: list[str], timeout_s: float | None = None) -> Registry:
    """The default fleet with the source validation gate replaced by a command agent."""
    data = copy.deepcopy(CATALOGUE)
    for spec in data["agents"]:
        if spec["name"] == GATE:
            spec["handler"] = {"command": command, "timeout_s": timeout_s}
    return validate_catalogue(data, load_pipeline(None), "test")


@pytest.fixture
def heartbeat(
    db: Database[Document], redis: redis_lib.Redis, agent_env: None
) -> Iterator[Callable[..., tuple[HeartbeatRecord, Runtime]]]:
    runtimes: list[Runtime] = []

    def run(command: list[str], timeout_s: float | None = None) -> tuple[HeartbeatRecord, Runtime]:
        runtime = Runtime.build(load_settings(), registry_with(command, timeout_s))
        runtimes.append(runtime)
        return run_heartbeat(runtime, GATE, "adhoc", debug=True), runtime

    yield run
    for runtime in runtimes:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)


def agent(mode: str, *extra: str) -> list[str]:
    return [sys.executable, str(AGENT), mode, *extra]


def stage_of(runtime: Runtime, bet: Bet) -> tuple[str, int]:
    now = runtime.enforcer.get(bet.bet_id)
    return now.stage, now.seq


def test_an_agent_that_moves_through_mcp_itself(heartbeat: Any, bet: Bet) -> None:
    record, runtime = heartbeat(agent("mcp"))
    assert record.status == "ok", record.error
    (entry,) = record.bets
    assert entry["outcome"] == "moved via mcp" and entry["exit_code"] == 0
    assert stage_of(runtime, bet) == ("source_validated", 1)
    moved = runtime.enforcer.ledger.record(bet.bet_id, 1)
    assert moved is not None and (moved.agent, moved.heartbeat_id) == (GATE, record.heartbeat_id)
    assert runtime.enforcer.verify() == []


def test_an_agent_that_prints_one_decision(heartbeat: Any, bet: Bet) -> None:
    record, runtime = heartbeat(agent("print"))
    assert record.status == "ok", record.error
    assert record.bets[0]["outcome"] == "advanced"
    assert stage_of(runtime, bet) == ("source_validated", 1)
    assert runtime.enforcer.history(bet.bet_id)[1].evidence == {"mode": "print"}
    assert runtime.db[USAGE].count_documents({"agent": GATE, "heartbeat_id": record.heartbeat_id}) == 1


@pytest.mark.parametrize(
    ("mode", "why"), [("garbage", "not one JSON decision"), ("fail", "exited with code 1")]
)
def test_garbage_or_a_bad_exit_is_a_clear_failure_and_moves_nothing(
    heartbeat: Any, bet: Bet, db: Database[Document], mode: str, why: str
) -> None:
    record, runtime = heartbeat(agent(mode))
    (entry,) = record.bets
    assert entry["outcome"] == "failed" and why in entry["error"]
    assert stage_of(runtime, bet) == ("sourced", 0)
    assert db[FAILURES].count_documents({"bet_id": bet.bet_id}) == 1


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in state  # killed, waiting to be reaped by its new parent


def test_a_hanging_agent_is_killed_with_its_children_and_its_claim_released(
    heartbeat: Any, bet: Bet, tmp_path: Path, db: Database[Document]
) -> None:
    pidfile = tmp_path / "child.pid"
    record, runtime = heartbeat(agent("hang", str(pidfile)), timeout_s=10)  # ample to start; then it hangs
    (entry,) = record.bets
    assert entry["outcome"] == "failed" and "process group killed" in entry["error"]
    wait_for(lambda: _dead(int(pidfile.read_text())), 10, "the agent's child to die")
    assert stage_of(runtime, bet) == ("sourced", 0)
    assert db["claims"].count_documents({"bet_id": bet.bet_id, "released_at": None}) == 0


def test_mcp_server_down_fails_loudly_files_a_task_and_runs_nothing(
    heartbeat: Any, bet: Bet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.ops import services as svc

    up = os.environ["FLEET_MCP_URL"]
    monkeypatch.setenv("FLEET_MCP_URL", f"http://127.0.0.1:{svc.free_port()}/mcp")
    get_settings.cache_clear()
    pidfile = tmp_path / "ran.pid"
    record, runtime = heartbeat(agent("hang", str(pidfile)))
    assert record.status == "failed" and "does not answer" in (record.error or "")
    assert not pidfile.exists() and record.bets == []
    (task,) = [t for t in runtime.board.open_tasks() if t.dedupe_key == f"mcp-unavailable:{GATE}"]
    assert task.assignee == runtime.registry.require(GATE).owner != GATE  # its owner, who can fix it
    assert stage_of(runtime, bet) == ("sourced", 0)
    # When the server answers again, the next heartbeat's check passes and closes the task
    monkeypatch.setenv("FLEET_MCP_URL", up)
    get_settings.cache_clear()
    again, runtime = heartbeat(agent("print"))
    assert again.status == "ok", again.error
    assert runtime.board.get(task.task_id).status == "done"


def test_the_program_never_sees_the_signing_secret_and_gets_an_mcp_config(
    heartbeat: Any, bet: Bet, tmp_path: Path, mcp_server: McpServer
) -> None:
    dump = tmp_path / "env.json"
    code = (
        "import json, os; env = dict(os.environ); "
        "seen = {'names': sorted(env), 'config': json.load(open(env['FLEET_MCP_CONFIG']))}; "
        f"json.dump(seen, open({str(dump)!r}, 'w'))"
    )
    record, _ = heartbeat([sys.executable, "-c", code])
    assert record.status == "ok", record.error
    seen = json.loads(dump.read_text())
    assert "FLEET_MCP_SECRET" not in seen["names"] and "FLEET_MONGO_URL" not in seen["names"]
    assert {"FLEET_MCP_TOKEN", "FLEET_MCP_URL", "FLEET_AGENT"} <= set(seen["names"])
    server = seen["config"]["mcpServers"]["fleet"]
    assert server["url"] == mcp_server.url and server["headers"]["Authorization"].startswith("Bearer ")
    assert os.environ.get("FLEET_MCP_SECRET") == SECRET


def test_the_llm_gate_example_without_a_key_leaves_the_bet(
    heartbeat: Any, bet: Bet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    record, runtime = heartbeat([sys.executable, str(ROOT / "examples" / "llm_gate.py")])
    (entry,) = record.bets
    assert entry["outcome"] == "deferred" and "no model configured" in entry["verdict"]
    assert stage_of(runtime, bet) == ("sourced", 0)


def test_a_missing_program_fails_the_heartbeat_in_one_line_and_doctor_says_so(
    heartbeat: Any, bet: Bet
) -> None:
    from fleet.ops.doctor import handlers_check

    record, runtime = heartbeat(["/nonexistent/agent-program"])
    assert record.status == "failed" and "command '/nonexistent/agent-program' is not found" in (
        record.error or ""
    )
    assert stage_of(runtime, bet) == ("sourced", 0)
    check = handlers_check(registry_with(["/nonexistent/agent-program"]))
    assert not check.ok and "is not found" in check.detail


def test_doctor_checks_the_mcp_server_when_agents_are_external(
    agent_env: None, mcp_server: McpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.ops import services as svc
    from fleet.ops.doctor import mcp_checks

    external, plain = (
        registry_with(agent("print")),
        validate_catalogue(CATALOGUE, load_pipeline(None), "test"),
    )
    assert mcp_checks(load_settings(), plain) == []
    (ok,) = mcp_checks(load_settings(), external)
    assert ok.ok and GATE in ok.detail
    monkeypatch.setenv("FLEET_MCP_URL", f"http://127.0.0.1:{svc.free_port()}/mcp")
    (down,) = mcp_checks(load_settings(), external)
    assert not down.ok and "does not answer" in down.detail and "fleet mcp" in down.fix


def test_a_scout_command_agent_creates_a_bet_through_mcp(
    db: Database[Document], redis: redis_lib.Redis, agent_env: None
) -> None:
    scout = load_pipeline(None).creators[0]
    data = copy.deepcopy(CATALOGUE)
    for spec in data["agents"]:
        if spec["name"] == scout:
            spec["handler"] = {"command": agent("create")}
    runtime = Runtime.build(load_settings(), validate_catalogue(data, load_pipeline(None), "test"))
    try:
        record = run_heartbeat(runtime, scout, "adhoc")
    finally:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)
    assert record.status == "ok", record.error
    (created,) = db["transitions"].find({"seq": 0})
    assert (created["agent"], created["heartbeat_id"], created["fields"]) == (
        scout, record.heartbeat_id, {"idea": f"from {scout}"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("then", "timeout_s", "why"), [("2", None, "exited with code 2"), ("hang", 3, "past its 3s")]
)
def test_usage_printed_before_a_bad_exit_or_a_timeout_is_counted(
    heartbeat: Any, bet: Bet, db: Database[Document], then: str, timeout_s: float | None, why: str
) -> None:
    # Given a program that prints its usage ($0.40), then exits 2 or hangs past its limit
    record, runtime = heartbeat(agent("spend", "0.4", then), timeout_s=timeout_s)
    # Then the bet failed, its entry has the exit code and full-length tails, and the usage counts
    (entry,) = record.bets
    assert entry["outcome"] == "failed" and why in entry["error"]
    assert entry["exit_code"] == (2 if then == "2" else 143)
    assert '"cost_usd": 0.4' in entry["stdout_tail"] and "stderr_tail" in entry
    (report,) = db[USAGE].find({"agent": GATE, "heartbeat_id": record.heartbeat_id})
    assert (report["cost_usd"], report["bet_id"]) == (0.4, bet.bet_id)
    assert stage_of(runtime, bet) == ("sourced", 0)


def test_failure_and_success_tails_are_equally_long(heartbeat: Any, bet: Bet) -> None:
    from fleet.agents.command import Run
    from fleet.agents.external import TAIL_BYTES

    long = "x" * (3 * TAIL_BYTES)
    report = Run(2, long, long, 1.0).report()
    assert len(report["stdout_tail"]) == len(report["stderr_tail"]) == TAIL_BYTES and report["exit_code"] == 2


@pytest.mark.parametrize("then", ["hang", "ok"])
def test_a_child_that_leaves_the_session_holding_stdout_dies_with_the_program(
    heartbeat: Any, bet: Bet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    pidfile = tmp_path / "escaped.pid"
    # Given a program that starts `setsid sleep 600` (holding stdout), then hangs past 3 s or exits
    record, runtime = heartbeat(agent("escape", str(pidfile), then), timeout_s=3)
    # Then the heartbeat ended, within the limit and the bounded drain, the child is gone, no temp left
    (entry,) = record.bets
    assert entry["seconds"] <= 3 + 2
    if then == "hang":
        assert entry["outcome"] == "failed" and "process group killed" in entry["error"]
    assert _dead(int(pidfile.read_text()))
    assert list(temp.iterdir()) == []
    assert stage_of(runtime, bet) == ("sourced", 0)
