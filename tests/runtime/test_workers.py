"""The runtime in real ``celery -A fleet worker`` processes over real Redis and FerretDB."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from fleet.constants import CLAIMS, HEARTBEATS, TRANSITIONS

from ..conftest import ROOT, wait_for
from .conftest import TEST_FLEET_ENV

pytestmark = pytest.mark.slow


def celery_call(stack, *args: str) -> str:
    """``celery -A fleet call ...`` as an operator types it, with the test fleet's settings."""
    env = {**os.environ, **stack.env, **TEST_FLEET_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "fleet", "call", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"celery call failed: {done.stderr[-2000:]}"
    return done.stdout.strip()


def sending_app():
    """A Celery app on the test broker, for sending tasks without a subprocess."""
    from fleet.app.celery_app import make_app
    from fleet.settings import load_settings

    return make_app(load_settings())


def heartbeats(db, **query) -> list[dict]:
    return list(db[HEARTBEATS].find(query))


def test_celery_call_without_queue_lands_in_the_agents_queue_and_advances(
    stack, db, redis, runtime, make_bets, start_worker
) -> None:
    # Given waiting bets and no worker yet
    bets = make_bets(3)
    # When an operator sends an ad-hoc heartbeat with plain `celery call` (no --queue)
    celery_call(
        stack,
        "fleet.heartbeat",
        "--args",
        json.dumps(["checker"]),
        "--kwargs",
        json.dumps({"reason": "adhoc"}),
    )
    # Then the message waits in the checker's queue, not elsewhere
    assert redis.llen("alpha") == 1 and redis.llen("beta") == 0 and redis.llen("ops") == 0
    # And a worker on that queue runs it and advances the bets
    start_worker(queues="alpha", **TEST_FLEET_ENV)
    wait_for(lambda: heartbeats(db, agent="checker", reason="adhoc"), 60, "the ad-hoc heartbeat")
    assert [runtime.enforcer.get(b.bet_id).stage for b in bets] == ["checked"] * 3


def test_two_workers_on_one_queue_never_double_commit(stack, db, runtime, make_bets, start_worker) -> None:
    # Given 40 bets and two workers with two processes each on the same queue
    bets = make_bets(40, lookup_s=0.01)
    start_worker(queues="alpha", concurrency=2, name="w1", **TEST_FLEET_ENV)
    start_worker(queues="alpha", concurrency=2, name="w2", **TEST_FLEET_ENV)
    # When many heartbeats of the checker are sent at once
    for _ in range(12):
        celery_call(stack, "fleet.heartbeat", "--args", json.dumps(["checker"]))
    wait_for(lambda: len(heartbeats(db, agent="checker")) >= 12, 120, "12 heartbeat records")
    # Then every bet moved exactly once, and the ledger verifies
    for bet in bets:
        moves = db[TRANSITIONS].count_documents({"bet_id": bet.bet_id, "from_stage": "new"})
        assert moves == 1
    assert runtime.enforcer.verify() == []


def test_the_agent_lock_holds_across_workers(stack, db, runtime, make_bets, start_worker) -> None:
    # Given slow bets and two idle workers on the checker's queue
    make_bets(8, sleep_s=3)  # two rounds of four bets at once: the first heartbeat works ~6 s
    start_worker(queues="alpha", name="w1", **TEST_FLEET_ENV)
    start_worker(queues="alpha", name="w2", **TEST_FLEET_ENV)
    app = sending_app()
    # When a second heartbeat of the agent arrives while the first is still working
    app.send_task("fleet.heartbeat", args=["checker"], queue="alpha")
    wait_for(lambda: db[CLAIMS].count_documents({}) == 8, 60, "the first heartbeat claiming bets")
    app.send_task("fleet.heartbeat", args=["checker"], queue="alpha")
    wait_for(lambda: len(heartbeats(db, agent="checker")) == 2, 60, "two heartbeat records")
    # Then the other worker ran it, found the lock held, and skipped, saying why
    records = sorted(heartbeats(db, agent="checker"), key=lambda h: h["status"])
    assert [h["status"] for h in records] == ["ok", "skipped"]
    assert "another heartbeat" in records[1]["error"]
    assert records[0]["worker"] != records[1]["worker"]


def test_a_worker_killed_mid_heartbeat_loses_no_bet(stack, db, runtime, make_bets, start_worker) -> None:
    # Given slow bets and a worker working on them
    bets = make_bets(8, sleep_s=2.0)  # two rounds of four: the kill lands before the second round ends
    doomed = start_worker(queues="alpha", name="doomed", **TEST_FLEET_ENV)
    celery_call(stack, "fleet.heartbeat", "--args", json.dumps(["checker"]))
    wait_for(lambda: db[CLAIMS].count_documents({}) >= 8, 60, "claims taken by the doomed worker")
    wait_for(lambda: db[TRANSITIONS].count_documents({"from_stage": "new"}) >= 1, 60, "first commit")
    # When the worker is killed with SIGKILL in the middle of the heartbeat
    doomed.stop(signal.SIGKILL)
    # Then another worker takes the claims over once they expire and finishes every bet
    start_worker(queues="alpha", name="heir", **TEST_FLEET_ENV)

    def heartbeat_then_all_checked() -> bool:
        seen = len(heartbeats(db, agent="checker"))
        celery_call(stack, "fleet.heartbeat", "--args", json.dumps(["checker"]))
        wait_for(lambda: len(heartbeats(db, agent="checker")) > seen, 30, "the heir's heartbeat")
        return all(runtime.enforcer.get(b.bet_id).stage == "checked" for b in bets)

    wait_for(heartbeat_then_all_checked, 90, "every bet checked by the heir")
    assert db[CLAIMS].count_documents({"n": {"$gte": 1}}) >= 1  # expired leases were taken over
    assert runtime.enforcer.verify() == []


def test_bad_task_arguments_fail_once_and_change_nothing(stack, db, runtime, make_bets, start_worker) -> None:
    bets = make_bets(1)
    worker = start_worker(queues="alpha,ops", **TEST_FLEET_ENV)
    app = sending_app()
    cases = [
        (["no_such_agent"], {}, "unknown agent"),
        ([42], {}, "agent must be a non-empty string"),
        (["checker", "scheduled", False, "extra"], {}, "too many positional arguments"),
        (["checker"], {"reason": "sometimes"}, "reason must be one of"),
        (["checker"], {"colour": "red"}, "unexpected keyword argument"),
    ]
    for args, kwargs, message in cases:
        result = app.send_task("fleet.heartbeat", args=args, kwargs=kwargs, queue="alpha")
        with pytest.raises(Exception, match=message):
            result.get(timeout=30)
    log = worker.output()
    assert "Traceback" not in log
    assert "Retry in" not in log
    assert db[TRANSITIONS].count_documents({}) == 1  # only the creation
    assert runtime.enforcer.get(bets[0].bet_id).stage == "new"
    assert heartbeats(db) == []


def test_an_unreachable_store_retries_the_heartbeat_with_backoff(stack, redis, start_worker) -> None:
    # Given a worker whose MongoDB-wire store cannot be reached (a closed port)
    from fleet.ops.services import free_port

    env = {**TEST_FLEET_ENV, "FLEET_MONGO_URL": f"mongodb://127.0.0.1:{free_port()}/"}
    worker = start_worker(queues="alpha", **env)
    # When a heartbeat arrives
    sending_app().send_task("fleet.heartbeat", args=["checker"], queue="alpha")
    # Then Celery retries it later (a transient error), saying why in one line, without a traceback
    line = wait_for(
        lambda: next((ln for ln in worker.output().splitlines() if "Retry in" in ln), None),
        90,
        "a retry scheduled by autoretry_for",
    )
    assert "LedgerUnavailable" in line and "Connection refused" in line
    assert "Traceback" not in worker.output()
