"""Fan-out within an agent: each claimed bet its own task, on any worker, exactly once."""

from __future__ import annotations

import signal

import pytest

from fleet.constants import CLAIMS, HEARTBEAT_PARTS, HEARTBEATS, TRANSITIONS
from fleet.errors import BadTaskArguments
from fleet.queries import peak_concurrency
from fleet.runtime import fanout
from fleet.runtime.heartbeat import run_bet, run_heartbeat
from fleet.runtime.records import parts_summary
from tasks.bet import parse_arguments

from ..conftest import wait_for
from .conftest import FAN_OUT_ENV, bet_messages


def moves_per_bet(db) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in db[TRANSITIONS].find({"seq": {"$gt": 0}}, {"bet_id": 1}):
        counts[doc["bet_id"]] = counts.get(doc["bet_id"], 0) + 1
    return counts


def test_a_big_batch_is_dispatched_as_bet_tasks_and_the_record_sums_the_parts(
    fan_runtime, make_bets, redis, db
) -> None:
    # Given eight waiting bets and a checker allowed six bets at once fleet-wide
    bets = make_bets(8)
    # When its heartbeat runs
    record = run_heartbeat(fan_runtime, "checker", "adhoc", heartbeat_id="hb-1")
    # Then six bets are sent as their own tasks on the checker's queue, the rest wait
    messages = bet_messages(redis)
    assert record.actions == {"dispatched": 6} and len(messages) == 6
    # And a second heartbeat meanwhile sends none of them again (they are in flight; the limit is full)
    assert run_heartbeat(fan_runtime, "checker", "adhoc").actions == {}
    assert fanout.free_slots(redis, fan_runtime.registry.require("checker")) == 0
    # When each bet task runs (here in-process, as a worker would)
    for task_id, args in messages:
        bet = parse_arguments(tuple(args), {})
        part = run_bet(fan_runtime, bet.agent, bet.view, bet.parent, task_id, bet.instructions_hash)
        assert part.status == "ok" and part.actions == {"advanced": 1}
    # Then each moved once, their leases are released, and the heartbeat's summary sums the parts
    assert sorted(moves_per_bet(db).values()) == [1] * 6
    assert parts_summary(db, "hb-1") == {"dispatched": 6, "parts_advanced": 6, "parts": 6}
    assert db[CLAIMS].count_documents({"released_at": None}) == 0
    assert fanout.free_slots(redis, fan_runtime.registry.require("checker")) == 6
    assert fan_runtime.enforcer.verify() == []
    assert {fan_runtime.enforcer.get(b.bet_id).stage for b in bets} == {"new", "checked"}


def test_a_small_batch_stays_in_process(fan_runtime, make_bets, redis) -> None:
    make_bets(3)
    record = run_heartbeat(fan_runtime, "checker", "adhoc")
    assert record.actions == {"claimed": 3, "advanced": 3} and bet_messages(redis) == []


def test_a_bet_task_whose_bet_moved_on_skips_it(fan_runtime, make_bets, db) -> None:
    [bet] = make_bets(1)
    fan_runtime.enforcer.advance(bet.bet_id, "checked", "checker", bet.seq, verdict="by hand")
    part = run_bet(fan_runtime, "checker", bet, "hb-x", "task-1")
    assert part.bets == [
        {"bet_id": bet.bet_id, "seq": 0, "outcome": "skipped", "error": "moved by someone else"}
    ]
    assert db[HEARTBEAT_PARTS].find_one({"_id": "task-1"})["parent"] == "hb-x"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("checker", "b", -1, "p", {}), {}),
        (("checker", "", 0, "p", {}), {}),
        (("checker", "b", 0, "p", {}), {"x": 1}),
        (("checker", "b", 0, "p", {"bet_id": "b"}), {}),
        (("checker", "b", 0, "p", "not a bet"), {}),
    ],
)
def test_bad_bet_task_arguments_are_one_clear_error(args, kwargs) -> None:
    with pytest.raises(BadTaskArguments, match="fleet.bet"):
        parse_arguments(args, kwargs)


def send_heartbeat() -> str:
    """Send one checker heartbeat through the broker; its task id is its record's id."""
    from fleet.app.celery_app import make_app
    from fleet.settings import load_settings

    sent = make_app(load_settings()).send_task(
        "fleet.heartbeat", args=["checker"], kwargs={"reason": "adhoc"}, queue="alpha"
    )
    return str(sent.id)


@pytest.mark.slow
def test_three_workers_process_every_dispatched_bet_exactly_once(
    db, runtime, make_bets, start_worker
) -> None:
    # Given six waiting bets (I/O-bound, 1 s each) and three workers on the checker's queue
    bets = make_bets(6, sleep_s=1)
    for name in ("w1", "w2", "w3"):
        start_worker(queues="alpha", concurrency=2, name=name, **FAN_OUT_ENV)
    # When one checker heartbeat runs
    send_heartbeat()
    # Then every bet moved exactly once, by bet tasks spread over the workers
    wait_for(lambda: db[HEARTBEAT_PARTS].count_documents({"reason": "bet"}) == 6, 90, "six part records")
    assert moves_per_bet(db) == {b.bet_id: 1 for b in bets}
    parts = list(db[HEARTBEAT_PARTS].find({"reason": "bet"}))
    assert len({part["worker"] for part in parts}) >= 2
    [parent] = db[HEARTBEATS].find({"reason": "adhoc"})
    assert parts_summary(db, parent["_id"])["parts_advanced"] == 6
    # And the parts are not counted as concurrent heartbeats (only the dispatching one is)
    assert peak_concurrency(db).peak == 1
    assert runtime.enforcer.verify() == []


@pytest.mark.slow
def test_a_worker_killed_mid_fan_out_loses_no_bet_and_moves_none_twice(
    db, runtime, make_bets, start_worker
) -> None:
    # Given six slow bets dispatched over three workers
    bets = make_bets(6, sleep_s=4)
    workers = [start_worker(queues="alpha", concurrency=2, name=n, **FAN_OUT_ENV) for n in ("w1", "w2", "w3")]
    send_heartbeat()
    working = lambda: next((w for w in workers if "fleet.bet[" in w.output()), None)  # noqa: E731
    victim = wait_for(working, 60, "a worker working on a bet")
    # When that worker is SIGKILLed mid-bet (its leases stop being renewed)
    victim.stop(signal.SIGKILL)

    def all_checked_after_a_heartbeat() -> bool:
        # Paced by the heartbeat itself: the next is sent once this one's record is stored.
        sent = send_heartbeat()
        wait_for(lambda: db[HEARTBEATS].find_one({"_id": sent}), 60, "the checker heartbeat's record")
        return all(runtime.enforcer.get(b.bet_id).stage == "checked" for b in bets)

    # Then later heartbeats take its bets over once their leases lapse, and every bet ends checked
    wait_for(all_checked_after_a_heartbeat, 120, "bets left behind by the killed worker to be taken over")
    # And none moved twice; the ledger verifies
    assert moves_per_bet(db) == {b.bet_id: 1 for b in bets}
    assert runtime.enforcer.verify() == []
