"""Faults in real worker processes: time limits, SIGKILLed workers, redeliveries, a Redis restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from fleet.constants import AGENT_LOCK_KEY, CLAIMS, FAILURES, HEARTBEATS, TRANSITIONS
from fleet.ops import services as svc
from fleet.runtime import heartbeat
from fleet.runtime.heartbeat import run_heartbeat

from ..conftest import wait_for
from .conftest import TEST_FLEET_ENV
from .test_workers import celery_call, heartbeats, sending_app

pytestmark = pytest.mark.slow

#: A short agent-lock lease for these workers, so a dead holder's lease lapses quickly.
SHORT_LEASE = {**TEST_FLEET_ENV, "FLEET_LOCK_TTL_S": "5"}


def record(db, heartbeat_id: str) -> dict | None:
    return db[HEARTBEATS].find_one({"_id": heartbeat_id})


def test_a_hung_heartbeat_stops_at_its_agents_time_limit_and_frees_the_agent(
    stack, db, redis, start_worker
) -> None:
    # Given a worker serving an agent whose handler hangs far past its 3 s time limit
    start_worker(queues="slow", **TEST_FLEET_ENV)
    # When it is sent the way an operator sends it (no limits given: the agent's own apply)
    celery_call(stack, "fleet.heartbeat", "--args", json.dumps(["sleeper"]))
    # Then Celery's soft limit stops it, its record says so, and its lock is released
    first = wait_for(lambda: heartbeats(db, agent="sleeper"), 60, "the sleeper's record")[0]
    assert first["status"] == "timeout" and "soft time limit" in first["error"]
    assert first["duration_s"] < 60
    assert not redis.exists(AGENT_LOCK_KEY.format(agent="sleeper"))
    # And the agent's next heartbeat runs instead of being skipped behind it
    celery_call(stack, "fleet.heartbeat", "--args", json.dumps(["sleeper"]))
    wait_for(lambda: len(heartbeats(db, agent="sleeper")) == 2, 60, "the second record")
    assert [h["status"] for h in heartbeats(db, agent="sleeper")] == ["timeout", "timeout"]


def test_at_the_soft_limit_a_polling_heartbeat_stops_its_bets_before_releasing_claims(
    stack, db, runtime, make_bets, start_worker
) -> None:
    # Given bets whose external calls are slow and failing (each attempt takes 1 s)
    bets = make_bets(8, lookup_s=1.0, fail_calls=True)
    start_worker(queues="alpha", **TEST_FLEET_ENV)
    # When a heartbeat is sent with a 1.5 s soft limit
    limits = {"soft_time_limit": 1.5, "time_limit": 60}
    sending_app().send_task("fleet.heartbeat", args=["checker"], queue="alpha", task_id="hb-soft", **limits)
    done = wait_for(lambda: record(db, "hb-soft"), 60, "the heartbeat's record")
    # Then it stopped: running bets were abandoned at their next call, the rest never started,
    # none is counted as a failed bet, every lease was released, and no bet moved
    assert done["status"] == "timeout", done
    outcomes = {bet["outcome"] for bet in done["bets"]}
    assert outcomes <= {"abandoned", "skipped"} and "abandoned" in outcomes
    assert db[FAILURES].count_documents({}) == 0
    assert db[CLAIMS].count_documents({"released_at": None}) == 0
    assert [runtime.enforcer.get(b.bet_id).stage for b in bets] == ["new"] * 8


def test_a_worker_killed_mid_heartbeat_blocks_its_agent_for_one_lease_at_most(
    stack, db, redis, runtime, make_bets, start_worker
) -> None:
    # Given a worker (5 s agent-lock lease) in the middle of a slow heartbeat
    make_bets(8, sleep_s=3)
    doomed = start_worker(queues="alpha", name="doomed", **SHORT_LEASE)
    sending_app().send_task("fleet.heartbeat", args=["checker"], queue="alpha")
    wait_for(lambda: db[CLAIMS].count_documents({}) == 8, 60, "the bets claimed")
    key = AGENT_LOCK_KEY.format(agent="checker")
    # When the worker is SIGKILLed
    doomed.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    # Then its lock has at most one lease left
    assert 0 < redis.pttl(key) <= 5000
    # And a new worker's heartbeats of that agent run as soon as the lease lapsed
    start_worker(queues="alpha", name="heir", **SHORT_LEASE)
    skipped = []

    def heartbeat_runs() -> dict | None:
        sent = sending_app().send_task("fleet.heartbeat", args=["checker"], queue="alpha")
        done = wait_for(lambda: record(db, sent.id), 60, "the heir's heartbeat")
        if done["status"] == "skipped":
            skipped.append(done)
            return None
        return done

    done = wait_for(heartbeat_runs, 60, "a heartbeat of the agent to run again")
    waited = time.monotonic() - killed_at
    print(f"\nblocked behind the dead holder: {len(skipped)} heartbeat(s), {waited:.1f}s")
    assert done["status"] == "ok"
    assert runtime.enforcer.verify() == []


def test_the_same_heartbeat_rerun_after_a_kill_finishes_the_work_once(
    stack, db, runtime, make_bets, start_worker
) -> None:
    # Given a heartbeat killed with its worker after its first commit
    bets = make_bets(8, sleep_s=2)
    doomed = start_worker(queues="alpha", name="doomed", **SHORT_LEASE)
    app = sending_app()
    app.send_task("fleet.heartbeat", args=["checker"], queue="alpha", task_id="hb-rerun")
    wait_for(lambda: db[TRANSITIONS].count_documents({"from_stage": "new"}) >= 1, 60, "the first commit")
    doomed.stop(signal.SIGKILL)
    # When the same message (same task id) is delivered again, as Redis redelivers it
    start_worker(queues="alpha", name="heir", **SHORT_LEASE)
    app.send_task("fleet.heartbeat", args=["checker"], queue="alpha", task_id="hb-rerun")
    done = wait_for(lambda: record(db, "hb-rerun"), 90, "the rerun's record")
    # Then it took its own leases back and finished every bet, each moved exactly once
    assert done["status"] == "ok", done
    assert [runtime.enforcer.get(b.bet_id).stage for b in bets] == ["checked"] * 8
    assert db[TRANSITIONS].count_documents({"from_stage": "new"}) == 8
    assert runtime.enforcer.verify() == []
    # And a third delivery of it finds the record and does nothing
    app.send_task("fleet.heartbeat", args=["checker"], queue="alpha", task_id="hb-rerun").get(timeout=60)
    assert db[TRANSITIONS].count_documents({}) == 16 and len(heartbeats(db)) == 1


def test_a_creator_delivered_twice_creates_its_bets_once(stack, db, start_worker) -> None:
    start_worker(queues="beta", **TEST_FLEET_ENV)
    app = sending_app()
    for _ in range(2):
        app.send_task("fleet.heartbeat", args=["maker"], queue="beta", task_id="hb-twice").get(timeout=60)
    assert db["bets"].count_documents({}) == 1 and len(heartbeats(db)) == 1


def restart_redis(stack) -> None:
    (service,) = [s for s in stack.services if s.name == "redis"]
    svc.stop(service)
    svc.start_redis(service)


def test_queued_and_running_heartbeats_survive_a_redis_restart(
    stack, db, redis, runtime, make_bets, start_worker
) -> None:
    # Given a checker heartbeat running on slow bets, and creator heartbeats queued with no worker
    bets = make_bets(8, sleep_s=2)
    checking = start_worker(queues="alpha", name="checking", **TEST_FLEET_ENV)
    app = sending_app()
    app.send_task("fleet.heartbeat", args=["checker"], queue="alpha", task_id="hb-running")
    for n in range(5):
        app.send_task("fleet.heartbeat", args=["maker"], queue="beta", task_id=f"hb-queued-{n}")
    wait_for(lambda: db[CLAIMS].count_documents({}) == 8, 60, "the checker working")
    # When Redis restarts
    restart_redis(stack)
    # Then every queued heartbeat is still there and runs once a worker comes
    making = start_worker(queues="beta", name="making", **TEST_FLEET_ENV)
    wait_for(lambda: len(heartbeats(db, agent="maker")) == 5, 90, "the five queued heartbeats")
    queued = [f"hb-queued-{n}" for n in range(5)]
    assert db[TRANSITIONS].count_documents({"heartbeat_id": {"$in": queued}}) == 5
    # And the running heartbeat was not cut mid-work: it finished every bet
    done = wait_for(lambda: record(db, "hb-running"), 90, "the running heartbeat's record")
    assert done["status"] == "ok", done
    assert db[TRANSITIONS].count_documents({"heartbeat_id": "hb-running", "to_stage": "checked"}) == 8
    # (the finisher, woken by those arrivals, may have moved some on since)
    assert {runtime.enforcer.get(b.bet_id).stage for b in bets} <= {"checked", "done"}
    # And once the fleet is quiet (workers stopped, lagging projections rolled forward as the
    # watchdog does), the ledger verifies clean
    for worker in (checking, making):
        worker.stop()
    runtime.enforcer.repair_all()
    assert runtime.enforcer.verify() == []


def test_a_heartbeat_that_expired_before_a_worker_took_it_is_recorded_as_expired(
    stack, db, start_worker
) -> None:
    # Given a heartbeat that expires before any worker serves its queue
    sent = sending_app().send_task("fleet.heartbeat", args=["maker"], queue="beta", expires=1)
    deadline = time.time() + 1
    wait_for(lambda: time.time() > deadline, 10, "the message to expire")
    # When a worker receives it
    start_worker(queues="beta", **TEST_FLEET_ENV)
    # Then it does not run, and the drop is on the record instead of silently gone
    done = wait_for(lambda: record(db, sent.id), 60, "the expired heartbeat's record")
    assert done["status"] == "expired" and done["agent"] == "maker"
    assert db["bets"].count_documents({}) == 0


def test_at_the_hard_limit_the_heartbeat_is_killed_recorded_and_its_leases_lapse(
    stack, db, redis, make_bets, start_worker
) -> None:
    # Given bets whose handler hangs where no stop signal reaches it (a plain sleep)
    make_bets(4, sleep_s=60)
    start_worker(queues="alpha", **SHORT_LEASE)
    app = sending_app()
    limits = {"soft_time_limit": 1, "time_limit": 3}
    # When a heartbeat runs past its hard limit
    app.send_task("fleet.heartbeat", args=["checker"], queue="alpha", task_id="hb-hard", **limits)
    # Then Celery kills it and the worker records that
    done = wait_for(lambda: record(db, "hb-hard"), 60, "the killed heartbeat's record")
    assert done["status"] == "killed" and "hard time limit (3s)" in done["error"]
    # And its agent lock and its claims lapse within one lease each, so the next one takes over
    wait_for(lambda: not redis.exists(AGENT_LOCK_KEY.format(agent="checker")), 30, "the lock to lapse")
    app.send_task("fleet.heartbeat", args=["checker"], queue="alpha", task_id="hb-next", **limits)
    taken_over = {"heartbeat_id": "hb-next"}
    wait_for(lambda: db[CLAIMS].count_documents(taken_over) == 4, 60, "the leases taken over")
    assert db[CLAIMS].count_documents({"n": 1}) == 4


def pool_processes(worker) -> list[int]:
    """The prefork pool processes of a worker (children of its main process)."""
    found = subprocess.run(["pgrep", "-P", str(worker.proc.pid)], capture_output=True, text=True, check=False)
    return [int(pid) for pid in found.stdout.split()]


def test_a_pool_process_killed_mid_heartbeat_is_redelivered_at_once_and_resumes(
    stack, db, runtime, make_bets, start_worker
) -> None:
    # Given a worker whose pool process is in the middle of a heartbeat, after its first commit
    bets = make_bets(8, sleep_s=2)
    worker = start_worker(queues="alpha", concurrency=1, **SHORT_LEASE)
    sending_app().send_task("fleet.heartbeat", args=["checker"], queue="alpha", task_id="hb-lost")
    wait_for(lambda: db[TRANSITIONS].count_documents({"from_stage": "new"}) >= 1, 60, "the first commit")
    # When that process is SIGKILLed (OOM killer, a crash), the worker itself staying up
    (child,) = pool_processes(worker)
    os.kill(child, signal.SIGKILL)
    # Then Celery requeues the message (task_reject_on_worker_lost), the copy waits for its own
    # dead run's lease, takes its claims back and finishes every bet, each moved exactly once
    done = wait_for(lambda: record(db, "hb-lost"), 90, "the redelivered heartbeat's record")
    assert done["status"] == "ok", done
    assert [runtime.enforcer.get(b.bet_id).stage for b in bets] == ["checked"] * 8
    assert db[TRANSITIONS].count_documents({"from_stage": "new"}) == 8
    assert runtime.enforcer.verify() == []


def test_redis_down_for_longer_than_a_lease_counts_as_a_lost_lock(stack, db, runtime, make_bets) -> None:
    # Given an in-process heartbeat on slow bets, with a 1.5 s agent-lock lease
    make_bets(4, sleep_s=3)
    runtime.settings = runtime.settings.model_copy(update={"lock_ttl_s": 1.5})
    records = []
    thread = threading.Thread(target=lambda: records.append(run_heartbeat(runtime, "checker")))
    thread.start()
    wait_for(lambda: db[CLAIMS].count_documents({}) == 4, 30, "the bets claimed")
    # When Redis is down for longer than the lease (its renewals fail for a whole lease)
    (service,) = [s for s in stack.services if s.name == "redis"]
    svc.stop(service)
    try:
        thread.join(timeout=60)
    finally:
        svc.start_redis(service)
    # Then the heartbeat stopped as if it had lost the lock, and says so; no bet moved twice
    (done,) = records
    assert done.status == "lock_lost", done.error
    assert {bet["outcome"] for bet in done.bets} <= {"abandoned", "skipped", "advanced"}
    assert runtime.enforcer.verify() == []


def test_an_agent_name_of_ten_thousand_characters_is_clipped_in_the_worker_log(
    stack, db, start_worker
) -> None:
    worker = start_worker(queues="ops", **TEST_FLEET_ENV)
    sent = sending_app().send_task("fleet.heartbeat", args=["x" * 10_000], queue="ops")
    with pytest.raises(Exception, match="unknown agent"):
        sent.get(timeout=60)
    wait_for(lambda: "unknown agent" in worker.output(), 30, "the worker's log line")
    lines = worker.output().splitlines()
    assert max(len(line) for line in lines) < 2_000


def redis_service(stack):
    (service,) = [s for s in stack.services if s.name == "redis"]
    return service


def test_a_heartbeat_that_finds_redis_down_at_its_lock_is_recorded_and_runs_once_it_is_back(
    stack, db, runtime, make_bets, monkeypatch
) -> None:
    # Given waiting bets and Redis down when a heartbeat comes to take its agent lock
    bets = make_bets(2)
    monkeypatch.setattr(heartbeat, "LOCK_RETRY_FIRST_S", 0.2)
    monkeypatch.setattr(heartbeat, "LOCK_RETRY_MAX_S", 0.5)
    done: list = []
    svc.stop(redis_service(stack))
    try:
        thread = threading.Thread(
            target=lambda: done.append(run_heartbeat(runtime, "checker", heartbeat_id="hb-no-redis"))
        )
        thread.start()
        # Then the store says at once why it has not run (Celery's retry would need the dead broker)
        waiting = wait_for(lambda: record(db, "hb-no-redis"), 30, "the heartbeat's unavailable record")
        assert waiting["status"] == "unavailable" and "Redis unreachable" in waiting["error"]
    finally:
        # When Redis is back
        svc.start_redis(redis_service(stack))
    thread.join(timeout=60)
    # Then the same heartbeat takes its lock and does its work, and its record says so
    (finished,) = done
    assert finished.status == "ok" and finished.actions["advanced"] == 2, finished.error
    assert record(db, "hb-no-redis")["status"] == "ok"
    assert [runtime.enforcer.get(b.bet_id).stage for b in bets] == ["checked"] * 2


def test_a_heartbeat_redis_never_came_back_for_is_left_recorded_and_its_redelivery_runs(
    stack, db, runtime, make_bets, monkeypatch
) -> None:
    # Given Redis down for longer than a heartbeat waits for it
    bets = make_bets(1)
    monkeypatch.setattr(heartbeat, "LOCK_RETRY_FIRST_S", 0.1)
    monkeypatch.setattr(heartbeat, "LOCK_WAIT_MAX_S", 0.3)
    svc.stop(redis_service(stack))
    try:
        given_up = run_heartbeat(runtime, "checker", heartbeat_id="hb-gave-up")
    finally:
        svc.start_redis(redis_service(stack))
    # Then it returned (no retry through the dead broker), recorded as not run, nothing moved
    assert given_up.status == "unavailable" and record(db, "hb-gave-up")["status"] == "unavailable"
    assert runtime.enforcer.get(bets[0].bet_id).stage == "new"
    # And when its message is redelivered (same id), it is not taken for done: it runs
    again = run_heartbeat(runtime, "checker", heartbeat_id="hb-gave-up")
    assert again.status == "ok" and runtime.enforcer.get(bets[0].bet_id).stage == "checked"
