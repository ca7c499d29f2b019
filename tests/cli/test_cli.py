"""The operator's commands, run as ``python -m fleet.cli`` against the real test services.

Each test sets up shared state through the same modules the fleet uses (the
enforcer, the board, a real in-process heartbeat), runs one command, and reads
its ``--json`` answer (or its table) the way an operator or a script would.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import yaml
from pymongo.database import Database

from fleet.board import Board, Origin
from fleet.constants import HEARTBEATS, TRANSITIONS
from fleet.definitions.catalogue import Registry
from fleet.definitions.protocols import PROTOCOLS_FILENAME
from fleet.errors import NotOwner
from fleet.ledger import Enforcer, ProtocolStamp
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.runtime import Runtime
from fleet.store import Document

from ..conftest import ROOT, wait_for
from .conftest import assert_one_line_error, cli_env, counts, invoke, run_cli

STAMP = ProtocolStamp(version="1.0", hash="cafe")


def advance_once(enforcer: Enforcer, registry: Registry, bet_id: str) -> str:
    """Move a fresh bet one step along the pipeline's first advance edge; return the agent."""
    pipeline = registry.pipeline
    edge = next(t for t in pipeline.edges_from(pipeline.initial_stage) if t.kind == "advance")
    enforcer.advance(bet_id, edge.dest, edge.owner, 0, verdict="pass", stamp=STAMP)
    return edge.owner


# --- status ---------------------------------------------------------------------------


def test_status_json_shows_every_stage_throughput_queues_and_counts(
    db: Database[Document], redis: redis_lib.Redis, enforcer: Enforcer, registry: Registry
) -> None:
    # Given three bets, one moved a stage on, and one refused attempt
    creator = registry.pipeline.creators[0]
    bets = [enforcer.create_bet(creator, {"idea": f"i{n}"}) for n in range(3)]
    advance_once(enforcer, registry, bets[0].bet_id)
    with pytest.raises(NotOwner):
        enforcer.advance(bets[1].bet_id, "killed", creator, 0, verdict="no")
    # When the operator asks for the status
    ran = run_cli("status", "--json")
    # Then every pipeline stage is listed in order, zeros included
    assert ran.code == 0, ran.text
    status = ran.json()
    stages = {row["stage"]: row["count"] for row in status["stages"]}
    assert list(stages) == [s.name for s in registry.pipeline.stages]
    assert stages[registry.pipeline.initial_stage] == 2 and sum(stages.values()) == status["bets"] == 3
    # And recent throughput counts transitions by kind, and the refusal
    assert status["throughput"]["by_kind"] == {"advance": 1, "create": 3}
    assert status["throughput"]["refused"] == 1 == status["refusals"]["total"]
    assert status["refusals"]["latest"][0]["bet_id"] == bets[1].bet_id
    # And audits, the board and every queue are counted
    assert (status["drift"], status["stranded"], status["audit_error"]) == (0, 0, None)
    assert status["open_tasks"] == 0
    assert status["queues"] == {name: 0 for name in sorted({"ops", *registry.queues()})}


def test_status_table_names_stages_and_queues(db: Database[Document], redis: redis_lib.Redis) -> None:
    ran = invoke("status")
    assert ran.code == 0, ran.text
    for heading in ("bets per stage", "queue depths", "refused transitions: 0", "sourced", "validation"):
        assert heading in ran.out


def test_status_watch_refreshes_until_ctrl_c(db: Database[Document], redis: redis_lib.Redis) -> None:
    # Given `status --watch` running in JSON mode (one line per refresh)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli", "status", "--watch", "--json", "--interval", "0.2"],
        cwd=ROOT,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        # When it has refreshed twice
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert all(json.loads(line)["pipeline"] for line in lines)
        # And the operator presses Ctrl-C
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Then it stops cleanly
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_status_reports_drift_from_a_newer_protocols_file(
    db: Database[Document], redis: redis_lib.Redis, registry: Registry, tmp_path: Path
) -> None:
    ran = run_cli("status", "--json", FLEET_PROTOCOLS_DIR=str(newer_protocols(tmp_path)))
    assert ran.code == 0, ran.text
    assert ran.json()["drift"] == len(registry)


# --- bets and one bet ------------------------------------------------------------------


def test_bets_lists_newest_first_and_filters_by_stage(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    # Given three bets, the first moved on
    creator = registry.pipeline.creators[0]
    bets = [enforcer.create_bet(creator, {"idea": f"i{n}"}) for n in range(3)]
    advance_once(enforcer, registry, bets[0].bet_id)
    moved = enforcer.get(bets[0].bet_id).stage
    # When the operator lists them
    listed = invoke("bets", "--json").json()
    # Then the most recently moved comes first
    assert listed["total"] == 3
    assert [b["bet_id"] for b in listed["bets"]][0] == bets[0].bet_id
    # And a stage filter and a limit apply
    at_initial = invoke("bets", "--stage", registry.pipeline.initial_stage, "--limit", "1", "--json").json()
    assert (at_initial["total"], len(at_initial["bets"])) == (2, 1)
    assert at_initial["bets"][0]["stage"] == registry.pipeline.initial_stage
    assert [b["bet_id"] for b in invoke("bets", "--stage", moved, "--json").json()["bets"]] == [
        bets[0].bet_id
    ]
    table = invoke("bets")
    assert table.code == 0 and bets[2].bet_id in table.out


def test_bet_shows_its_timeline_with_protocols_verdicts_and_refusals(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    # Given a bet created, moved once under a protocols stamp, and then refused once
    creator = registry.pipeline.creators[0]
    bet = enforcer.create_bet(creator, {"idea": "timeline"}, stamp=STAMP)
    mover = advance_once(enforcer, registry, bet.bet_id)
    with pytest.raises(NotOwner):
        enforcer.advance(bet.bet_id, "killed", creator, 1, verdict="no")
    # When the operator asks for the bet
    timeline = invoke("bet", bet.bet_id, "--json").json()
    # Then each transition says who moved it, how, under which protocols, with what verdict
    first, second = timeline["transitions"]
    assert (first["agent"], first["kind"], first["to_stage"]) == (creator, "create", "sourced")
    assert (second["agent"], second["verdict"], second["seq"]) == (mover, "pass", 1)
    assert (second["protocol_version"], second["protocol_hash"]) == ("1.0", "cafe")
    assert timeline["stage"] == second["to_stage"] and timeline["fields"] == {"idea": "timeline"}
    # And the refused attempt is listed with its reason
    [refusal] = timeline["refusals"]
    assert (refusal["agent"], refusal["reason"]) == (creator, "not the owner")
    table = invoke("bet", bet.bet_id)
    assert table.code == 0
    assert mover in table.out and "not the owner" in table.out and "1.0 (cafe)" in table.out


# --- trigger ---------------------------------------------------------------------------


def test_trigger_puts_one_adhoc_heartbeat_on_the_agents_queue(
    db: Database[Document], redis: redis_lib.Redis, registry: Registry
) -> None:
    # Given no worker running and an agent of the validation group
    spec = next(s for s in registry if s.polls)
    # When the operator triggers it in debug mode
    ran = run_cli("trigger", spec.name, "--debug", "--json")
    # Then one message waits on the agent's queue, and nowhere else
    assert ran.code == 0, ran.text
    sent = ran.json()
    assert (sent["agent"], sent["queue"], sent["reason"], sent["debug"]) == (
        spec.name,
        spec.queue,
        "adhoc",
        True,
    )
    assert redis.llen(spec.queue) == 1
    assert sum(redis.llen(q) for q in {"ops", *registry.queues()} - {spec.queue}) == 0
    # And it is the heartbeat task for that agent, with the id printed
    message = json.loads(redis.lindex(spec.queue, 0))
    headers = message["headers"]
    assert (headers["task"], headers["id"]) == ("fleet.heartbeat", sent["task_id"])
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([spec.name], {"reason": "adhoc", "debug": True})


def test_trigger_without_json_prints_task_id_and_queue(
    db: Database[Document], redis: redis_lib.Redis, registry: Registry
) -> None:
    ran = run_cli("trigger", "ceo")
    assert ran.code == 0, ran.text
    assert "queue ops" in ran.out and "task " in ran.out
    assert redis.llen("ops") == 1


# --- agents and the schedule ---------------------------------------------------------------


def test_agents_lists_specs_with_their_last_heartbeat(
    db: Database[Document], redis: redis_lib.Redis, registry: Registry
) -> None:
    # Given one real heartbeat of a sourcing agent
    scout = registry.pipeline.creators[0]
    runtime = Runtime.build()
    try:
        record = run_heartbeat(runtime, scout, "adhoc")
    finally:
        runtime.pool.shutdown(wait=True)
    assert record.status == "ok"
    # When the operator lists the agents
    rows = {row["name"]: row for row in invoke("agents", "--json").json()}
    # Then every spec is there with its schedule, queue and protocols
    assert list(rows) == registry.names()
    spec = registry.require(scout)
    row = rows[scout]
    assert (row["group"], row["queue"], row["protocol_version"], row["creates"]) == (
        spec.group,
        spec.queue,
        spec.protocol_version,
        True,
    )
    assert len(row["starts"]) == len(spec.schedule.hours)
    # And the scout's last heartbeat, with its actions
    assert row["heartbeats"] == 1
    last = row["last"]
    assert (last["heartbeat_id"], last["reason"], last["status"]) == (record.heartbeat_id, "adhoc", "ok")
    assert last["actions"]["created"] == record.actions["created"] > 0
    gate = next(s for s in registry if s.owns)
    assert rows[gate.name]["owns"] == [f"{a} -> {b}" for a, b in gate.owns]
    assert (rows[gate.name]["heartbeats"], rows[gate.name]["last"]) == (0, None)
    table = invoke("agents")
    assert table.code == 0 and scout in table.out and "created=" in table.out


def test_schedule_compares_the_staggered_peak_with_fixed_intervals(registry: Registry) -> None:
    staggered = invoke("schedule", "--json").json()
    naive = invoke("schedule", "--naive", "--json").json()
    assert len(staggered["hours"]) == 24 and staggered["naive"] is False and naive["naive"] is True
    total_starts = sum(len(s.schedule.hours) for s in registry)
    assert (
        sum(h["starts"] for h in staggered["hours"])
        == total_starts
        == sum(h["starts"] for h in naive["hours"])
    )
    assert staggered["peak_running"] == naive["peak_running"] < staggered["naive_peak_running"]
    assert max(h["peak_running"] for h in naive["hours"]) == naive["naive_peak_running"]
    table = invoke("schedule")
    assert table.code == 0 and "peak running at once" in table.out


# --- the board ------------------------------------------------------------------------------


def test_board_lists_open_tasks_and_closes_one(db: Database[Document]) -> None:
    # Given two open tasks
    board = Board(db)
    first, _ = board.file(assignee="ceo", origin=Origin.MANUAL, dedupe_key="k1", title="one", by="test")
    second, _ = board.file(assignee="ceo", origin=Origin.MANUAL, dedupe_key="k2", title="two", by="test")
    assert [t["task_id"] for t in invoke("board", "--json").json()] == [first.task_id, second.task_id]
    # When the operator closes one with a reason
    closed = invoke("board", "close", first.task_id, "--reason", "done by hand", "--json")
    # Then it is closed by the operator, with the reason in its history
    assert closed.code == 0, closed.text
    assert (closed.json()["status"], closed.json()["closed_reason"]) == ("done", "done by hand")
    assert board.history(first.task_id)[-1]["by"] == "operator"
    # And only the other one is still open; --all shows both
    assert [t["task_id"] for t in invoke("board", "--json").json()] == [second.task_id]
    every = {t["task_id"]: t["status"] for t in invoke("board", "--all", "--json").json()}
    assert every == {first.task_id: "done", second.task_id: "open"}
    table = invoke("board")
    assert table.code == 0 and "two" in table.out
    # And closing it again is one clear error that changes nothing
    assert_one_line_error(run_cli("board", "close", first.task_id, "--reason", "again"), "already closed")


def test_board_close_of_an_unknown_task_fails_cleanly(db: Database[Document]) -> None:
    before = counts(db)
    assert_one_line_error(run_cli("board", "close", "nope#0", "--reason", "x"), "unknown board task")
    assert counts(db) == before


# --- audit ----------------------------------------------------------------------------------


def newer_protocols(tmp_path: Path) -> Path:
    """A protocols folder at version 1.1 (1.0 in its history): every 1.0 spec is behind."""
    data = yaml.safe_load((ROOT / "protocols" / PROTOCOLS_FILENAME).read_text())
    data["version"] = "1.1"
    data["history"] = [{"version": "1.0", "summary": "the first rules"}]
    (tmp_path / PROTOCOLS_FILENAME).write_text(yaml.safe_dump(data))
    return tmp_path


def test_audit_reports_findings_and_files_them_only_when_asked(
    db: Database[Document], registry: Registry, tmp_path: Path
) -> None:
    # Given protocols newer than every agent spec
    newer = str(newer_protocols(tmp_path))
    # When the operator audits without --file
    found = run_cli("audit", "--json", FLEET_PROTOCOLS_DIR=newer).json()
    # Then every spec is reported behind, and nothing is filed
    assert found["protocol_version"] == "1.1" and found["filed"] is None
    assert {f["agent"] for f in found["drift"]} == set(registry.names())
    assert {f["kind"] for f in found["drift"]} == {"spec_version_behind"}
    assert found["stranded"] == []
    assert Board(db).open_tasks() == []
    # When the operator files them
    filed = run_cli("audit", "--file", "--json", FLEET_PROTOCOLS_DIR=newer).json()
    # Then one task per finding is on the board, filed by the operator
    assert filed["filed"]["drift"] == {"filed": len(registry), "closed": 0}
    tasks = Board(db).open_tasks()
    assert len(tasks) == len(registry) and {t.filed_by for t in tasks} == {"operator"}
    # And once the specs match the protocols again, --file closes them
    resolved = invoke("audit", "--file", "--json").json()
    assert resolved["drift"] == [] and resolved["filed"]["drift"] == {"filed": 0, "closed": len(registry)}
    assert Board(db).open_tasks() == []
    table = invoke("audit")
    assert table.code == 0 and "drift: 0 finding(s)" in table.out


# --- verify ---------------------------------------------------------------------------------


def test_verify_is_clean_on_a_healthy_ledger(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    bet = enforcer.create_bet(registry.pipeline.creators[0], {"idea": "fine"})
    advance_once(enforcer, registry, bet.bet_id)
    ran = invoke("verify", "--json")
    assert ran.code == 0, ran.text
    assert ran.json() == {"bet_id": None, "ok": True, "violations": []}
    assert invoke("verify", "--bet", bet.bet_id).code == 0
    assert "no violations" in invoke("verify").out


def test_verify_exits_1_on_a_planted_violation(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    # Given a healthy bet, and a broken one whose seq 1 is missing (a record planted at seq 2)
    healthy = enforcer.create_bet(registry.pipeline.creators[0], {"idea": "fine"})
    broken = enforcer.create_bet(registry.pipeline.creators[0], {"idea": "broken"})
    planted = db[TRANSITIONS].find_one({"_id": f"{broken.bet_id}:0"})
    assert planted is not None
    db[TRANSITIONS].insert_one({**planted, "_id": f"{broken.bet_id}:2", "seq": 2, "kind": "advance"})
    # When the operator verifies the ledger
    ran = run_cli("verify", "--json")
    # Then the command fails and names the skipped seq
    assert ran.code == 1, ran.text
    report = ran.json()
    assert report["ok"] is False
    problems = {(v["bet_id"], v["seq"]): v["problem"] for v in report["violations"]}
    assert problems[(broken.bet_id, 1)] == "no readable record at seq 1"
    assert {bet_id for bet_id, _ in problems} == {broken.bet_id}
    # And a check of the healthy bet alone passes; the table view fails too
    assert invoke("verify", "--bet", healthy.bet_id).code == 0
    table = invoke("verify")
    assert table.code == 1 and "no readable record at seq 1" in table.out


# --- seed -----------------------------------------------------------------------------------


def test_seed_creates_bets_through_the_first_sourcing_agent(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    ran = run_cli("seed", "3", "--json")
    assert ran.code == 0, ran.text
    seeded = ran.json()
    creator = registry.pipeline.creators[0]
    assert seeded["agent"] == creator and len(seeded["created"]) == 3
    for bet in seeded["created"]:
        [record] = enforcer.history(bet["bet_id"])
        assert (record.agent, record.to_stage, record.kind) == (
            creator,
            registry.pipeline.initial_stage,
            "create",
        )
        assert record.protocol_version == "1.0" and record.protocol_hash
    assert enforcer.verify() == []


def test_seed_wakes_the_first_stages_pollers(
    db: Database[Document], redis: redis_lib.Redis, registry: Registry
) -> None:
    # When an operator seeds bets
    assert run_cli("seed", "2").code == 0
    # Then every agent polling the first stage (and taking wakes) has a wake heartbeat queued
    pollers = {s.name: s.queue for s in registry if registry.pipeline.initial_stage in s.polls and s.wake}
    assert pollers
    woken = set()
    for queue in set(pollers.values()):
        for raw in redis.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            if kwargs == {"reason": "wake"}:
                woken.add(args[0])
    assert woken == set(pollers)


def test_seed_with_another_sourcing_agent(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    other = registry.pipeline.creators[-1]
    ran = invoke("seed", "1", "--agent", other)
    assert ran.code == 0, ran.text
    [bet] = invoke("bets", "--json").json()["bets"]
    assert bet["created_by"] == other and bet["bet_id"] in ran.out


@pytest.mark.parametrize("agent", ["ceo", "nobody"])
def test_seed_refuses_an_agent_that_cannot_create_bets(db: Database[Document], agent: str) -> None:
    before = counts(db)
    assert_one_line_error(run_cli("seed", "2", "--agent", agent), agent)
    assert counts(db) == before


# --- doctor ---------------------------------------------------------------------------------


def test_doctor_passes_on_the_test_stack(db: Database[Document], redis: redis_lib.Redis) -> None:
    ran = run_cli("doctor", "--json")
    assert ran.code == 0, ran.text
    checks = {c["name"]: c for c in ran.json()["checks"]}
    expected = [
        "settings",
        "redis",
        "store",
        "protocols",
        "pipeline",
        "catalogue",
        "handlers",
        "procfile",
        "store layout",
    ]
    assert list(checks) == expected
    assert all(c["ok"] for c in checks.values())
    assert "version 1.0" in checks["protocols"]["detail"]
    table = run_cli("doctor")
    assert table.code == 0 and "ok   handlers" in table.out


def test_doctor_fails_on_a_bad_protocols_dir(db: Database[Document], tmp_path: Path) -> None:
    ran = run_cli("doctor", "--json", FLEET_PROTOCOLS_DIR=str(tmp_path / "missing"))
    assert ran.code == 1
    checks = {c["name"]: c for c in ran.json()["checks"]}
    assert checks["protocols"]["ok"] is False and "FLEET_PROTOCOLS_DIR" in checks["protocols"]["fix"]
    assert checks["store"]["ok"] and checks["redis"]["ok"]
    table = run_cli("doctor", FLEET_PROTOCOLS_DIR=str(tmp_path / "missing"))
    assert table.code == 1 and "FAIL protocols" in table.out and "Traceback" not in table.text


def test_doctor_fails_when_a_queue_has_no_worker_line(db: Database[Document], tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("ops: celery -A fleet worker -Q ops,sourcing -c 1\nbeat: celery -A fleet beat\n")
    ran = run_cli("doctor", "--procfile", str(procfile), "--json")
    assert ran.code == 1
    [failed] = [c for c in ran.json()["checks"] if not c["ok"]]
    assert (
        failed["name"] == "procfile" and "validation" in failed["detail"] and "ops," not in failed["detail"]
    )


def test_doctor_probe_reaches_a_running_worker(db: Database[Document], start_worker: Any) -> None:
    start_worker(queues="ops")
    ran = run_cli("doctor", "--probe", "--json")
    assert ran.code == 0, ran.text
    assert ran.json()["checks"][-1]["name"] == "probe"


# --- up -------------------------------------------------------------------------------------


def test_up_runs_the_procfile_until_ctrl_c(
    db: Database[Document], redis: redis_lib.Redis, tmp_path: Path
) -> None:
    # Given a Procfile with one worker written as in the real one (a bare `celery`), and a PATH
    # without the virtualenv (the services already run: their URLs are set)
    procfile = tmp_path / "Procfile"
    worker = "celery -A fleet worker -Q ops -c 1 -n up@%h --without-gossip --without-mingle"
    procfile.write_text(f"ops: {worker} -l INFO\n")
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli", "up", "--procfile", str(procfile)],
            cwd=ROOT,
            env={**cli_env(), "PATH": "/usr/bin:/bin"},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        # When the worker is ready and the operator presses Ctrl-C
        wait_for(lambda: "ready." in log.read_text() or proc.poll() is not None, 60, "the worker")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Then honcho stopped the worker, and the command says how to stop the services
    output = log.read_text()
    assert proc.returncode == 0, output
    assert "ready." in output, output
    assert "ops.1 stopped" in output and "fleet services down" in output
    assert "web console: http://127.0.0.1:" in output
    assert "Traceback" not in output


def test_up_without_a_procfile_fails_cleanly(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("up", "--procfile", str(tmp_path / "Procfile")), "no Procfile")


def test_read_commands_change_nothing(db: Database[Document], redis: redis_lib.Redis) -> None:
    # Read commands leave the shared state as they found it
    before = counts(db)
    for args in (["status", "--json"], ["bets", "--json"], ["agents", "--json"], ["audit", "--json"]):
        assert invoke(*args).code == 0
    assert counts(db) == before
    assert db[HEARTBEATS].count_documents({}) == 0


def test_prune_dry_run_counts_and_prune_deletes_old_heartbeats(db: Database[Document]) -> None:
    old = datetime.now(UTC) - timedelta(days=30)
    db[HEARTBEATS].insert_many(
        [
            {"_id": "old", "agent": "a", "started_at": old},
            {"_id": "new", "agent": "a", "started_at": datetime.now(UTC)},
        ]
    )
    dry = invoke("prune", "--dry-run", "--json")
    assert dry.code == 0, dry.text
    assert dry.json()["deleted"][HEARTBEATS] == 1 and dry.json()["dry_run"] is True
    assert db[HEARTBEATS].count_documents({}) == 2
    ran = invoke("prune")
    assert ran.code == 0, ran.text
    assert "deleted 1 document(s)" in ran.out
    assert {doc["_id"] for doc in db[HEARTBEATS].find()} == {"new"}


@pytest.mark.parametrize("days", ["0", "-3", "1e9"])
def test_prune_refuses_a_bad_window_in_one_line(db: Database[Document], days: str) -> None:
    db[HEARTBEATS].insert_one(
        {"_id": "h", "agent": "a", "started_at": datetime.now(UTC) - timedelta(days=99)}
    )
    ran = run_cli("prune", "--days", days)
    assert_one_line_error(ran)
    assert db[HEARTBEATS].count_documents({}) == 1


def test_status_and_bet_show_refusals_per_move_and_held_items(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    from fleet.constants import HOLDS, REFUSALS
    from fleet.ledger.holds import Hold

    bet = enforcer.create_bet(registry.pipeline.creators[0], {"name": "x"})
    now = enforcer.ledger.now()
    for _ in range(3):
        db[REFUSALS].insert_one(
            {"bet_id": bet.bet_id, "agent": "someone", "from_stage": bet.stage, "to_stage": "elsewhere",
             "expected_seq": 0, "reason": "illegal transition", "error": "IllegalTransition", "detail": "",
             "heartbeat_id": None, "protocol_version": None, "protocol_hash": None, "at": now}
        )  # fmt: skip
    hold = Hold("someone", bet.bet_id, 0, bet.stage, "elsewhere", 3, "illegal transition", "f", "p", now)
    db[HOLDS].insert_one(hold.doc())
    status = invoke("status", "--json")
    assert status.code == 0, status.text
    [row] = status.json()["refused_moves"]
    assert row == {
        "agent": "someone",
        "move": f"{bet.stage} -> elsewhere",
        "refusals": 3,
        "bets": 1,
        "held": 1,
    }
    shown = invoke("bet", bet.bet_id)
    assert shown.code == 0, shown.text
    assert "held back from someone" in shown.out
