"""Wake on arrival: coalesced per agent, capped fleet-wide, switchable, and live in real workers."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from fleet.constants import (
    AGENT_LOCK_KEY,
    HEARTBEATS,
    RUNNING_HEARTBEATS_KEY,
    WAKE_AGAIN_KEY,
    WAKE_WAITING_KEY,
)
from fleet.errors import SettingsError
from fleet.runtime import wake
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.records import HeartbeatRecord
from fleet.runtime.runtime import Runtime
from fleet.settings import load_settings

from ..conftest import wait_for
from .conftest import TEST_FLEET_ENV


def queued(redis, queue: str) -> list[dict]:
    """The task messages waiting in ``queue`` (kombu's Redis list), decoded."""
    return [json.loads(raw) for raw in redis.lrange(queue, 0, -1)]


def arguments(message: dict) -> tuple[list, dict]:
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    return args, kwargs


def with_settings(runtime: Runtime, **changes: object) -> Runtime:
    runtime.settings = runtime.settings.model_copy(update=changes)
    return runtime


def test_a_hundred_arrivals_send_one_wake(runtime, redis) -> None:
    # Given the finisher polls "checked" and nothing is running
    # When 100 bets arrive there at once, from 8 threads
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: wake.on_arrival(runtime, "checked")["finisher"], range(100)))
    # Then exactly one wake heartbeat is queued for the finisher, the rest coalesced
    assert outcomes.count("sent") == 1
    assert set(outcomes) <= {"sent", "pending"}
    messages = queued(redis, "beta")
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "fleet.heartbeat"
    assert arguments(messages[0]) == (["finisher"], {"reason": "wake"})
    assert wake.running_count(redis) == 1  # the pending wake counts against the cap


def test_the_cap_holds_under_a_burst(runtime, redis) -> None:
    # Given a cap of 3 and two heartbeats already running
    with_settings(runtime, wake_max_concurrent=3, wake_min_gap_s=0)
    with (
        wake.tracked(runtime, "x", "hb-1", "scheduled", 60),
        wake.tracked(runtime, "y", "hb-2", "scheduled", 60),
    ):
        # When bets arrive at both polled stages, many times
        outcomes = [wake.on_arrival(runtime, stage) for stage in ("new", "checked") * 20]
        # Then one wake fits under the cap; the other agent is refused, never over the cap
        sent = [name for o in outcomes for name, what in o.items() if what == "sent"]
        assert sent == ["checker"]
        assert {o["finisher"] for o in outcomes if "finisher" in o} == {"capped"}
        assert wake.running_count(redis) == 3
    # And finished heartbeats leave the count
    assert wake.running_count(redis) == 1
    # And the agent turned away is woken once a heartbeat ends and frees a slot
    assert redis.smembers(WAKE_WAITING_KEY) == {b"finisher"}
    now = runtime.enforcer.ledger.now()
    wake.after_heartbeat(runtime, HeartbeatRecord("hb-1", "x", "scheduled", now, "1.0"))
    assert [arguments(m)[0] for m in queued(redis, "beta")] == [["finisher"]]
    assert wake.running_count(redis) == 2 and not redis.smembers(WAKE_WAITING_KEY)


def test_a_wake_inside_the_gap_is_delayed_not_dropped(runtime, redis) -> None:
    # Given the finisher was woken and has run since (no wake pending), within the gap
    with_settings(runtime, wake_min_gap_s=30)
    assert wake.on_arrival(runtime, "checked") == {"finisher": "sent"}
    redis.zrem(RUNNING_HEARTBEATS_KEY, wake.pending_member("finisher"))
    # When another bet arrives
    assert wake.on_arrival(runtime, "checked") == {"finisher": "delayed"}
    # Then a second wake is queued, due at the end of the gap
    etas = [message["headers"]["eta"] for message in queued(redis, "beta")]
    assert len(etas) == 2 and sum(eta is not None for eta in etas) == 1


def test_wakes_are_switched_off_fleet_wide_and_per_agent(runtime, registry, redis) -> None:
    with_settings(runtime, wake=False)
    assert wake.on_arrival(runtime, "checked") == {"finisher": "off"}
    with_settings(runtime, wake=True)
    spec = registry.require("finisher").model_copy(update={"wake": False})
    assert wake.wake(runtime, spec) == "off"
    assert redis.llen("beta") == 0 and wake.running_count(redis) == 0


def test_an_arrival_while_the_agent_runs_wakes_it_again_after(runtime, redis) -> None:
    # Given the finisher's heartbeat is running (its lock is held)
    redis.set(AGENT_LOCK_KEY.format(agent="finisher"), "token")
    # When a bet arrives at its stage
    assert wake.on_arrival(runtime, "checked") == {"finisher": "deferred"}
    assert redis.llen("beta") == 0 and redis.exists(WAKE_AGAIN_KEY.format(agent="finisher"))
    # Then, once that heartbeat has ended, the finisher is woken once
    redis.delete(AGENT_LOCK_KEY.format(agent="finisher"))
    now = runtime.enforcer.ledger.now()
    record = HeartbeatRecord("hb-f", "finisher", "scheduled", started_at=now, spec_protocol_version="1.0")
    wake.after_heartbeat(runtime, record)
    assert redis.llen("beta") == 1 and not redis.exists(WAKE_AGAIN_KEY.format(agent="finisher"))


def test_a_bad_wake_setting_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("FLEET_WAKE_MAX_CONCURRENT", "0")
    with pytest.raises(SettingsError, match="FLEET_WAKE_MAX_CONCURRENT"):
        load_settings()


@pytest.mark.slow
def test_a_commit_wakes_the_next_owner_in_real_workers(
    stack, db, redis, runtime, make_bets, start_worker
) -> None:
    # Given bets waiting at the first stage and a worker serving both queues
    bets = make_bets(3)
    start_worker(queues="alpha,beta", concurrency=2, **TEST_FLEET_ENV)
    # When only the checker is triggered (no schedule runs in this test)
    from fleet.app.celery_app import make_app

    make_app(load_settings()).send_task(
        "fleet.heartbeat", args=["checker"], kwargs={"reason": "adhoc"}, queue="alpha"
    )
    # Then the finisher is woken by the arrivals and finishes every bet
    wait_for(lambda: all(runtime.enforcer.get(b.bet_id).stage == "done" for b in bets), 90, "bets done")
    woken = wait_for(lambda: list(db[HEARTBEATS].find({"agent": "finisher", "reason": "wake"})), 30, "record")
    assert woken and all(doc["status"] == "ok" for doc in woken)
    assert runtime.enforcer.verify() == []
    wait_for(lambda: redis.zcard(RUNNING_HEARTBEATS_KEY) == 0, 30, "running set empty")


def test_a_commit_in_a_heartbeat_wakes_the_next_stages_poller(runtime, make_bets, redis) -> None:
    # Given two bets for the checker
    make_bets(2)
    # When its heartbeat moves them to the finisher's stage
    record = run_heartbeat(runtime, "checker", "adhoc")
    assert record.actions["advanced"] == 2
    # Then one wake (coalesced) waits in the finisher's queue, and none for the checker
    assert [arguments(m) for m in queued(redis, "beta")] == [(["finisher"], {"reason": "wake"})]
    assert queued(redis, "alpha") == []


def test_a_creators_heartbeat_wakes_the_first_stages_poller(runtime, redis) -> None:
    # Given the maker's heartbeat created a bet
    now = runtime.enforcer.ledger.now()
    record = HeartbeatRecord("hb-m", "maker", "scheduled", started_at=now, spec_protocol_version="1.0")
    record.actions = {"created": 1}
    # When it ends
    wake.after_heartbeat(runtime, record)
    # Then the checker (polling the initial stage) is woken
    assert [arguments(m) for m in queued(redis, "alpha")] == [(["checker"], {"reason": "wake"})]


def test_a_wake_that_found_its_agent_running_is_deferred_to_that_runs_end(runtime, redis) -> None:
    # Given a wake heartbeat of the finisher skipped because another run of it holds the lock
    redis.set(AGENT_LOCK_KEY.format(agent="finisher"), "token")
    now = runtime.enforcer.ledger.now()
    record = HeartbeatRecord("hb-w", "finisher", "wake", started_at=now, spec_protocol_version="1.0")
    record.status = "skipped"
    # When it ends
    wake.after_heartbeat(runtime, record)
    # Then the running heartbeat is flagged to wake the finisher again when it ends
    assert redis.exists(WAKE_AGAIN_KEY.format(agent="finisher")) and redis.llen("beta") == 0


def test_a_running_entry_is_a_lease_renewed_while_alive_and_gone_after(runtime, redis) -> None:
    # Given a heartbeat counted for the cap with a 1 s lease
    member = wake.running_member("hb-lease")
    with wake.tracked(runtime, "checker", "hb-lease", "scheduled", ttl_s=1.0):
        first = redis.zscore(RUNNING_HEARTBEATS_KEY, member)
        # When it runs for longer than its lease, Then the renewer keeps pushing its expiry
        wait_for(lambda: (redis.zscore(RUNNING_HEARTBEATS_KEY, member) or 0) > first + 1, 10, "a renewal")
    # And it stops counting when it ends
    assert redis.zscore(RUNNING_HEARTBEATS_KEY, member) is None


def test_a_heartbeat_killed_with_its_process_stops_counting_within_its_lease(runtime, redis, stack) -> None:
    import os
    import signal
    import subprocess
    import sys

    from ..conftest import ROOT

    # Given a process running a heartbeat with a 600 s time limit, counted for the cap under a
    # 1 s lease (the lease shortened for the test), SIGKILLed mid-run
    url = stack.env["FLEET_BROKER_URL"]
    code = (
        "import signal, redis\n"
        "from fleet.runtime import wake\n"
        "class W: pass\n"
        f"w = W(); w.redis = redis.Redis.from_url({url!r})\n"
        "wake.RUNNING_LEASE_S = 1.0\n"
        "with wake.tracked(w, 'checker', 'hb-dead', 'scheduled', ttl_s=600.0):\n"
        "    print('in', flush=True); signal.pause()\n"  # until SIGKILLed
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "in"
    member = wake.running_member("hb-dead")
    assert redis.zscore(RUNNING_HEARTBEATS_KEY, member) is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    # Then once its lease has run out (not its time limit), the next admission drops it
    finisher = runtime.registry.require("finisher")

    def dropped() -> bool:
        wake.wake(runtime, finisher)  # an admission trims lapsed entries
        return redis.zscore(RUNNING_HEARTBEATS_KEY, member) is None

    # (a 10 s deadline: far past the 1 s lease, far short of the 600 s time limit)
    wait_for(dropped, 10, "the dead heartbeat's entry to lapse")


def wakes_of(redis, queue: str, agent: str) -> list[dict]:
    return [m for m in queued(redis, queue) if arguments(m) == ([agent], {"reason": "wake"})]


@pytest.fixture
def small_batch(runtime: Runtime) -> Runtime:
    """The checker taking two bets per heartbeat."""
    from fleet.definitions.catalogue import load_registry

    from .conftest import FLEETDEF

    runtime.registry = load_registry(f"{FLEETDEF}:SMALL_BATCH", TEST_FLEET_ENV["FLEET_PIPELINE"])
    return runtime


def test_a_heartbeat_that_left_a_backlog_wakes_its_agent_again_after_the_gap(
    small_batch, make_bets, redis
) -> None:
    # Given five waiting bets, a checker taking two per heartbeat, and a wake gap of 30 s
    with_settings(small_batch, wake_min_gap_s=30)
    make_bets(5)
    assert wake.wake(small_batch, small_batch.registry.require("checker")) == "sent"  # starts the gap
    redis.delete("alpha")
    # When that woken heartbeat (counted for the cap as the task counts it) moves a full batch and ends
    with wake.tracked(small_batch, "checker", "hb-woken", "wake", 60):
        record = run_heartbeat(small_batch, "checker", "wake", heartbeat_id="hb-woken")
    assert record.actions["advanced"] == 2
    wake.after_heartbeat(small_batch, record)
    # Then it is woken again for the rest, but not inside the gap: the wake waits for its end
    [again] = wakes_of(redis, "alpha", "checker")
    assert again["headers"]["eta"] is not None
    assert not redis.exists(WAKE_AGAIN_KEY.format(agent="checker"))


def test_a_heartbeat_that_deferred_its_whole_batch_is_not_woken_again(small_batch, make_bets, redis) -> None:
    with_settings(small_batch, wake_min_gap_s=0)
    make_bets(5, verdict="wait")
    record = run_heartbeat(small_batch, "checker", "scheduled")
    assert record.actions["deferred"] == 2
    wake.after_heartbeat(small_batch, record)
    assert wakes_of(redis, "alpha", "checker") == []


def test_a_heartbeat_that_drained_its_stage_is_not_woken_again(runtime, make_bets, redis) -> None:
    with_settings(runtime, wake_min_gap_s=0)
    make_bets(3)
    record = run_heartbeat(runtime, "checker", "scheduled")  # batch 50: all three in one go
    wake.after_heartbeat(runtime, record)
    assert wakes_of(redis, "alpha", "checker") == []
    assert [arguments(m)[0] for m in queued(redis, "beta")] == [["finisher"]]  # the next owner
