"""The heartbeat, run in-process against real FerretDB and Redis."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fleet.board import Board, Task
from fleet.constants import AGENT_LOCK_KEY, CLAIMS, FAILURES, HEARTBEATS, TASKS, TRANSITIONS
from fleet.ledger.claims import Claims
from fleet.runtime import batch, bets
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.locks import agent_lock

from ..conftest import wait_for
from . import fleetdef


def stages(runtime, bets) -> list[str]:
    return [runtime.enforcer.get(b.bet_id).stage for b in bets]


def test_heartbeat_advances_waiting_bets_and_records_itself(runtime, make_bets) -> None:
    # Given three bets waiting at the checker's stage
    bets = make_bets(3)
    # When the checker's heartbeat runs
    record = run_heartbeat(runtime, "checker", "adhoc", heartbeat_id="hb-1")
    # Then every bet moved, the record says so, and the transitions carry the heartbeat and protocol
    assert record.status == "ok", record.error
    assert record.actions["claimed"] == 3 and record.actions["advanced"] == 3
    assert stages(runtime, bets) == ["checked"] * 3
    stored = runtime.db[HEARTBEATS].find_one({"_id": "hb-1"})
    assert stored["reason"] == "adhoc" and stored["protocol_version"] == "1.0"
    assert stored["protocol_hash"] == record.protocol_hash
    moves = list(runtime.db[TRANSITIONS].find({"heartbeat_id": "hb-1"}))
    assert len(moves) == 3 and {m["protocol_hash"] for m in moves} == {record.protocol_hash}
    assert runtime.enforcer.verify() == []


def test_kill_verdicts_take_the_kill_edge(runtime, make_bets) -> None:
    bets = make_bets(2, verdict="kill")
    record = run_heartbeat(runtime, "checker")
    assert record.actions["killed"] == 2
    assert stages(runtime, bets) == ["killed", "killed"]


def test_lookups_inside_one_heartbeat_run_in_parallel(runtime, make_bets) -> None:
    # Given a bet whose five lookups each take 200 ms
    make_bets(1, lookup_s=0.2)
    fleetdef.PEAK_LOOKUPS["peak"] = 0
    # When the checker handles it
    run_heartbeat(runtime, "checker")
    # Then all five lookups were in flight at the same time
    assert fleetdef.PEAK_LOOKUPS["peak"] == 5


def test_failed_external_calls_are_retried_then_the_bet_is_left_and_counted(runtime, make_bets) -> None:
    # Given a bet whose external calls always fail
    (bet,) = make_bets(1, fail_calls=True)
    # When the checker's heartbeat runs (debug on, to see the attempts)
    record = run_heartbeat(runtime, "checker", debug=True)
    # Then each of the 5 calls had 3 attempts, the bet stayed put, one failure is counted,
    # and the heartbeat itself did not fail
    assert record.status == "ok"
    assert record.actions["failed"] == 1 and record.actions["retries"] == 5 * 2
    assert sum("retry" in step for step in record.trace) == 5 * 2
    assert runtime.enforcer.get(bet.bet_id).stage == "new"
    failure = runtime.db[FAILURES].find_one({"bet_id": bet.bet_id})
    assert failure["seq"] == 0 and "after 3 attempts" in failure["error"]


def test_one_bad_bet_never_aborts_the_others(runtime, make_bets) -> None:
    good = make_bets(2)
    (bad,) = make_bets(1, crash=True)
    record = run_heartbeat(runtime, "checker")
    assert record.status == "ok"
    assert record.actions["advanced"] == 2 and record.actions["failed"] == 1
    assert stages(runtime, good) == ["checked", "checked"]
    assert runtime.enforcer.get(bad.bet_id).stage == "new"


def test_a_bet_document_that_does_not_parse_is_skipped_and_flagged(runtime, make_bets) -> None:
    good = make_bets(1)
    runtime.db["bets"].insert_one({"_id": "broken", "stage": "new", "seq": "not a number"})
    record = run_heartbeat(runtime, "checker")
    assert record.status == "ok"
    assert record.actions["corrupt"] == 1 and record.actions["advanced"] == 1
    assert stages(runtime, good) == ["checked"]
    assert {"bet_id": "broken", "outcome": "corrupt"}.items() <= record.bets[0].items()


def test_a_second_heartbeat_of_the_same_agent_skips_and_says_so(runtime, make_bets) -> None:
    bets = make_bets(1)
    with agent_lock(runtime.redis, "checker", 30) as held:
        assert held
        record = run_heartbeat(runtime, "checker")
    assert record.status == "skipped" and "another heartbeat" in record.error
    assert stages(runtime, bets) == ["new"]
    assert runtime.db[HEARTBEATS].find_one({"_id": record.heartbeat_id})["status"] == "skipped"


def test_invalid_protocols_make_the_heartbeat_refuse_and_leave_bets_untouched(
    runtime, make_bets, tmp_path: Path
) -> None:
    # Given a malformed protocols file
    bets = make_bets(2)
    (tmp_path / "fleet.yaml").write_text("version: [not, a, version\n")
    runtime.settings = runtime.settings.model_copy(update={"protocols_dir": tmp_path})
    before = runtime.db[TRANSITIONS].count_documents({})
    # When a heartbeat runs
    record = run_heartbeat(runtime, "checker")
    # Then it refuses, says why, moves nothing, and files a task
    assert record.status == "refused" and "protocols" in record.error
    assert runtime.db[TRANSITIONS].count_documents({}) == before
    assert stages(runtime, bets) == ["new", "new"]
    assert runtime.db[TASKS].count_documents({"assignee": "checker"}) == 1
    # And once the file is fixed, the next heartbeat runs and closes that task itself
    runtime.settings = runtime.settings.model_copy(
        update={"protocols_dir": Path(fleetdef.__file__).parent / "protocols"}
    )
    assert run_heartbeat(runtime, "checker").status == "ok"
    assert runtime.board.open_for("checker") == []
    assert stages(runtime, bets) == ["checked", "checked"]


def test_debug_mode_keeps_the_decision_trace(runtime, make_bets) -> None:
    make_bets(1)
    quiet = run_heartbeat(runtime, "checker")
    make_bets(1)
    loud = run_heartbeat(runtime, "checker", debug=True)
    assert quiet.trace == []
    assert any(step.startswith("advanced") for step in loud.trace)


def test_a_live_claim_held_elsewhere_is_respected_and_an_expired_one_taken_over(runtime, make_bets) -> None:
    # Given one bet claimed by a live heartbeat elsewhere and one whose holder died
    live, dead = make_bets(2)
    now = datetime.now(UTC)
    for bet, expires in ((live, now + timedelta(minutes=5)), (dead, now - timedelta(seconds=1))):
        runtime.db[CLAIMS].insert_one(
            {
                "_id": f"{bet.bet_id}:0:0",
                "bet_id": bet.bet_id,
                "seq": 0,
                "n": 0,
                "agent": "checker",
                "heartbeat_id": "elsewhere",
                "claimed_at": now,
                "expires_at": expires,
                "released_at": None,
            }
        )
    # When the checker's heartbeat runs
    record = run_heartbeat(runtime, "checker")
    # Then it left the live claim alone and took over the expired one with a new lease
    assert record.actions["claimed"] == 1
    assert stages(runtime, [live, dead]) == ["new", "checked"]
    assert runtime.db[CLAIMS].find_one({"_id": f"{dead.bet_id}:0:1"})["released_at"] is not None


def test_sweep_agents_run_their_handler_once(runtime) -> None:
    record = run_heartbeat(runtime, "maker")
    assert record.status == "ok" and record.actions["created"] == 1
    assert runtime.db["bets"].count_documents({"stage": "new"}) == 1


class WatchedClaims(Claims):
    """Claims that note every renewal, and whether one ran while the claims were being released."""

    renewed = threading.Event()
    renewed_while_working = False
    renewed_while_releasing = False

    def renew(self) -> None:
        WatchedClaims.renewed.set()
        super().renew()

    def release_all(self) -> None:
        # Give a still-running renewer ample time (> ttl/3) to strike during the release.
        WatchedClaims.renewed_while_working = WatchedClaims.renewed.is_set()
        WatchedClaims.renewed.clear()
        WatchedClaims.renewed_while_releasing = WatchedClaims.renewed.wait(timeout=1.5)
        super().release_all()


def test_claims_are_released_only_after_the_renewer_stopped(runtime, make_bets, monkeypatch) -> None:
    # Given a bet whose handling outlasts a claim renewal (claim_ttl_s is 2: renewals every ~0.7 s)
    make_bets(1, sleep_s=1.0)
    WatchedClaims.renewed.clear()
    monkeypatch.setattr(batch, "Claims", WatchedClaims)
    # When the checker's heartbeat handles it
    record = run_heartbeat(runtime, "checker")
    # Then the lease was renewed while working, but never while being released
    # (on FerretDB such a renewal can write the claim back unreleased)
    assert record.actions["advanced"] == 1
    assert WatchedClaims.renewed_while_working
    assert not WatchedClaims.renewed_while_releasing
    assert runtime.db[CLAIMS].count_documents({"released_at": None}) == 0


def test_the_agent_lock_is_kept_while_a_heartbeat_overruns_its_time_limit(runtime) -> None:
    # Given an agent lock taken for a 1 s time limit (a TTL of 1 + LOCK_MARGIN_S seconds)
    key = AGENT_LOCK_KEY.format(agent="checker")
    with agent_lock(runtime.redis, "checker", 1) as held:
        assert held
        lowest = [runtime.redis.pttl(key)]

        def renewed() -> bool:
            ttl = runtime.redis.pttl(key)
            lowest[0] = min(lowest[0], ttl)
            return ttl > lowest[0]

        # When the heartbeat keeps running, Then its lock's TTL is pushed back (renewed)
        # instead of running out under it and letting a second heartbeat in
        wait_for(renewed, 5, "the lock to be renewed")
    # And it is released at the end
    assert not runtime.redis.exists(key)


class OperatorClosesFirst(Board):
    """A board on which an operator closes each listed task right after the agent listed it."""

    def open_for(self, assignee: str) -> list[Task]:
        tasks = super().open_for(assignee)
        for task in tasks:
            self.close(task.task_id, by="operator", reason="fixed by hand")
        return tasks


def test_a_refusal_task_closed_meanwhile_by_someone_else_does_not_fail_the_heartbeat(
    runtime, make_bets
) -> None:
    # Given an open task filed by a heartbeat that refused invalid protocols
    bets = make_bets(1)
    runtime.board.file(
        assignee="checker",
        origin="escalation",
        dedupe_key="protocols-invalid:checker",
        title="t",
        by="checker",
    )
    # And an operator closing it between the agent's listing and its own close
    runtime.board = OperatorClosesFirst(runtime.db)
    # When the next heartbeat runs on valid protocols
    record = run_heartbeat(runtime, "checker")
    # Then it runs as usual
    assert record.status == "ok", record.error
    assert stages(runtime, bets) == ["checked"]


def test_counters_name_kill_and_park_moves_by_the_stage_they_reach() -> None:
    from fleet.definitions.pipeline import Kind

    assert bets.move_outcome(Kind.KILL, "rejected") == "rejected"
    assert bets.move_outcome(Kind.PARK, "on_hold") == "on_hold"
    assert bets.move_outcome(Kind.ADVANCE, "screened") == "advanced"
    assert bets.move_outcome(Kind.REVIVE, "applied") == "revived"
