"""Heartbeats that are safe to run twice, to lose their lock and to lose the store, in-process.

Real FerretDB and Redis; the same heartbeat id stands for Celery's task id (a retry
or a redelivery reuses it).
"""

from __future__ import annotations

import threading

import pytest

from fleet.constants import AGENT_LOCK_KEY, BETS, CLAIMS, HEARTBEATS, REFUSALS, TRANSITIONS
from fleet.errors import LedgerUnavailable
from fleet.ledger.claims import Claims
from fleet.runtime import batch, records
from fleet.runtime.heartbeat import run_heartbeat

from ..conftest import wait_for


def counts(db) -> dict[str, int]:
    return {name: db[name].count_documents({}) for name in (BETS, TRANSITIONS, REFUSALS, HEARTBEATS)}


def forget_record(runtime, heartbeat_id: str) -> None:
    """As if the run had died after its work and before writing its record."""
    runtime.db[HEARTBEATS].delete_one({"_id": heartbeat_id})


def test_a_creator_rerun_under_the_same_id_finds_its_bets_instead_of_creating_more(runtime) -> None:
    # Given a creator's heartbeat that created its bet, then died before its record
    first = run_heartbeat(runtime, "maker", heartbeat_id="hb-make")
    assert first.status == "ok" and first.actions["created"] == 1
    before = counts(runtime.db)
    forget_record(runtime, "hb-make")
    # When Celery runs it again under the same task id
    again = run_heartbeat(runtime, "maker", heartbeat_id="hb-make")
    # Then the same bet id is found, not duplicated, and nothing is refused
    assert again.status == "ok", again.error
    assert counts(runtime.db) == before
    assert runtime.enforcer.verify() == []


def test_a_rerun_of_a_creator_whose_projection_was_never_written_restores_it(runtime) -> None:
    # Given a creator's heartbeat that committed its bet's record and died before projecting it
    run_heartbeat(runtime, "maker", heartbeat_id="hb-half")
    forget_record(runtime, "hb-half")
    runtime.db[BETS].delete_many({})
    # When it runs again
    run_heartbeat(runtime, "maker", heartbeat_id="hb-half")
    # Then the bet is back where it was created, still one
    assert runtime.db[BETS].count_documents({"stage": "new"}) == 1
    assert runtime.db[TRANSITIONS].count_documents({}) == 1
    assert runtime.enforcer.verify() == []


def test_a_polling_rerun_under_the_same_id_moves_nothing_twice(runtime, make_bets) -> None:
    # Given a checker heartbeat that moved three bets, then died before its record
    bets = make_bets(3)
    assert run_heartbeat(runtime, "checker", heartbeat_id="hb-check").actions["advanced"] == 3
    before = counts(runtime.db)
    forget_record(runtime, "hb-check")
    # When it runs again
    again = run_heartbeat(runtime, "checker", heartbeat_id="hb-check")
    # Then it finds nothing left to do: no transition, no refusal
    assert again.status == "ok" and "advanced" not in again.actions
    assert counts(runtime.db) == before
    assert [runtime.enforcer.get(b.bet_id).stage for b in bets] == ["checked"] * 3


def test_a_heartbeat_whose_record_exists_is_not_run_again(runtime, make_bets) -> None:
    # Given a finished heartbeat (its record is stored)
    run_heartbeat(runtime, "maker", heartbeat_id="hb-done")
    make_bets(2)
    before = counts(runtime.db)
    # When the same message is delivered again (its ack was lost), to a creator and a poller alike
    again = run_heartbeat(runtime, "maker", heartbeat_id="hb-done")
    # Then the stored record is returned and nothing runs
    assert again.status == "ok" and again.actions == {"created": 1}
    assert counts(runtime.db) == before


def test_an_external_call_failing_in_a_sweep_handler_fails_the_heartbeat_not_the_task(runtime) -> None:
    # When a sweep handler's external call fails every attempt
    record = run_heartbeat(runtime, "caller", heartbeat_id="hb-call")
    # Then the heartbeat returns (Celery does not retry it) and its record says why
    assert record.status == "failed" and "failed after 3 attempts" in record.error
    assert record.actions["retries"] == 2
    assert runtime.db[HEARTBEATS].find_one({"_id": "hb-call"})["status"] == "failed"


def test_a_redelivered_copy_waits_for_its_own_dead_run_s_lease_then_runs(runtime, make_bets) -> None:
    # Given the checker's lock left by a killed run of this very heartbeat (its token, 1 s left)
    bets = make_bets(1)
    runtime.settings = runtime.settings.model_copy(update={"lock_ttl_s": 1.5})
    runtime.redis.set(AGENT_LOCK_KEY.format(agent="checker"), "hb-again", px=1000)
    # When the redelivered copy runs
    record = run_heartbeat(runtime, "checker", heartbeat_id="hb-again")
    # Then it waited for that lease to lapse instead of skipping, and did the work
    assert record.status == "ok", record.error
    assert runtime.enforcer.get(bets[0].bet_id).stage == "checked"


def test_a_lock_left_by_another_dead_heartbeat_is_skipped_until_its_lease_lapses(runtime, make_bets) -> None:
    # Given the checker's lock left by another heartbeat's killed run
    make_bets(1)
    key = AGENT_LOCK_KEY.format(agent="checker")
    runtime.redis.set(key, "hb-dead", px=1000)
    # When a heartbeat comes while the lease runs, Then it skips, naming the holder's lease
    skipped = run_heartbeat(runtime, "checker")
    assert skipped.status == "skipped" and "(hb-dead)" in skipped.error
    # And once the short lease lapsed (no renewer: its holder is dead), the next one runs
    wait_for(lambda: not runtime.redis.exists(key), 10, "the dead holder's lease to lapse")
    assert run_heartbeat(runtime, "checker").status == "ok"


def test_a_lost_agent_lock_stops_the_heartbeat_and_is_recorded(runtime, make_bets) -> None:
    # Given a checker working on slow bets with a short lock lease (renewed every 0.5 s)
    bets = make_bets(8, sleep_s=2)
    runtime.settings = runtime.settings.model_copy(update={"lock_ttl_s": 1.5})
    key = AGENT_LOCK_KEY.format(agent="checker")
    records = []
    worker = threading.Thread(target=lambda: records.append(run_heartbeat(runtime, "checker", debug=True)))
    worker.start()
    wait_for(lambda: runtime.db[CLAIMS].count_documents({}) == 8, 30, "the bets claimed")
    # When the lock key disappears mid-heartbeat (failover, FLUSHDB, eviction)
    runtime.redis.delete(key)
    worker.join(timeout=60)
    # Then the heartbeat noticed, started no new work, and says so on its record
    (record,) = records
    assert record.status == "lock_lost", record.error
    outcomes = [bet["outcome"] for bet in record.bets]
    assert len(outcomes) == 8 and "failed" not in outcomes
    assert set(outcomes) <= {"advanced", "abandoned", "skipped"}
    assert "skipped" in outcomes or "abandoned" in outcomes
    # And it released its leases, never recreated someone else's lock, and the ledger verifies
    assert runtime.db[CLAIMS].count_documents({"released_at": None}) == 0
    assert not runtime.redis.exists(key)
    assert runtime.enforcer.verify() == []
    moved = sum(runtime.enforcer.get(b.bet_id).stage == "checked" for b in bets)
    assert moved == outcomes.count("advanced")


class FailingRelease(Claims):
    """Claims whose release finds the store down as well."""

    def release_all(self) -> None:
        raise LedgerUnavailable("claims: releasing a lease: store unavailable")


def test_a_store_outage_reports_the_original_error_not_the_failed_release(
    runtime, make_bets, monkeypatch
) -> None:
    # Given a bet whose handling finds the store down, and a store still down at release time
    make_bets(1, store_down=True)
    monkeypatch.setattr(batch, "Claims", FailingRelease)
    # When the heartbeat runs, Then the error Celery retries on is the original one
    with pytest.raises(LedgerUnavailable, match="as the bet asked"):
        run_heartbeat(runtime, "checker")


def test_a_record_that_cannot_be_stored_does_not_rerun_the_work(runtime, make_bets, monkeypatch) -> None:
    # Given a store that goes down right before the heartbeat's final record
    bets = make_bets(2)

    def store_down(*_args, **_kwargs) -> None:
        raise LedgerUnavailable("heartbeat record: store unavailable")

    monkeypatch.setattr(records, "write_record", store_down)
    monkeypatch.setattr(records, "RECORD_WRITE_WINDOW_S", 0.5)
    # When the heartbeat finishes its work
    record = run_heartbeat(runtime, "checker", heartbeat_id="hb-unrecorded")
    # Then it returns normally (no Celery retry re-running the work); its work is done once
    assert record.status == "ok" and record.actions["advanced"] == 2
    assert [runtime.enforcer.get(b.bet_id).stage for b in bets] == ["checked"] * 2
    assert runtime.db[HEARTBEATS].find_one({"_id": "hb-unrecorded"}) is None
