"""A writer SIGKILLed between its commit insert and its projection write loses nothing.

The child process runs exactly the enforcer's own first half of a write (its checks and
the insert of the transition record, the commit point), then kills itself before the
projection is written. The ledger is left with a committed record and a lagging (or
missing) projection, which the next reader or writer repairs.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from typing import Any

import pytest

from fleet.constants import BETS, TRANSITIONS
from fleet.errors import StaleBet
from fleet.ledger import Bet, Enforcer

from . import _crasher
from .pipelines import small


def run_child(target: Callable[..., None], *args: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=target, args=(small(), *args))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == -signal.SIGKILL, f"child ended with {child.exitcode}, not SIGKILL"


def next_call_get(enforcer: Enforcer, bet: Bet) -> Bet:
    return enforcer.get(bet.bet_id)


def next_call_stale_advance(enforcer: Enforcer, bet: Bet) -> Bet:
    # The closer read the lagging projection (seq 1, "checked") and acts on it: refused, repaired.
    with pytest.raises(StaleBet) as raised:
        enforcer.advance(bet.bet_id, "done", "closer", 1, verdict="from the stale view")
    assert "bet is at seq 2 (parked)" in str(raised.value)
    return Bet.model_validate({**_projection(enforcer, bet), "bet_id": bet.bet_id})


def next_call_fresh_advance(enforcer: Enforcer, bet: Bet) -> Bet:
    # The reviver knows the bet is parked at seq 2 (from its history) and moves it on.
    moved = enforcer.advance(bet.bet_id, "checked", "reviver", 2, verdict="revive")
    assert (moved.stage, moved.seq) == ("checked", 3)
    return moved


def next_call_repair_all(enforcer: Enforcer, bet: Bet) -> Bet:
    assert enforcer.repair_all() == 1
    return enforcer.get(bet.bet_id)


def _projection(enforcer: Enforcer, bet: Bet) -> dict[str, Any]:
    doc = enforcer.db[BETS].find_one({"_id": bet.bet_id}, {"_id": 0})
    assert doc is not None
    return doc


NEXT_CALLS = {
    "get": (next_call_get, ("parked", 2)),
    "an advance from the stale view": (next_call_stale_advance, ("parked", 2)),
    "an advance from the true seq": (next_call_fresh_advance, ("checked", 3)),
    "the watchdog's repair_all": (next_call_repair_all, ("parked", 2)),
}


@pytest.mark.parametrize("next_call, expected", NEXT_CALLS.values(), ids=NEXT_CALLS.keys())
def test_a_writer_killed_after_its_commit_leaves_a_state_the_next_call_repairs(
    db, enforcer: Enforcer, next_call: Callable[[Enforcer, Bet], Bet], expected: tuple[str, int]
) -> None:
    # Given a bet at seq 1 ("checked")
    bet = enforcer.create_bet("maker", {"idea": "x"}, bet_id="crash-1")
    bet = enforcer.advance(bet.bet_id, "checked", "checker", 0, verdict="ok")
    # When a closer's process commits checked -> parked and is killed before projecting
    run_child(_crasher.advance_then_die, bet.bet_id, "parked", "closer", 1)
    # Then the move is committed but the projection still says seq 1, which verify reports
    assert db[TRANSITIONS].find_one({"_id": "crash-1:2"})["heartbeat_id"] == "hb-crash"
    assert (_projection(enforcer, bet)["stage"], _projection(enforcer, bet)["seq"]) == ("checked", 1)
    (violation,) = enforcer.verify()
    assert "projection at seq 1 ('checked') but the last record is seq 2 ('parked')" in violation.problem
    # When the next call comes
    seen = next_call(enforcer, bet)
    # Then the projection is rolled forward and the ledger verifies clean
    assert (seen.stage, seen.seq) == expected
    assert (_projection(enforcer, bet)["stage"], _projection(enforcer, bet)["seq"]) == expected
    assert enforcer.verify() == []


def test_a_creator_killed_after_its_commit_leaves_a_bet_the_watchdog_restores(db, enforcer: Enforcer) -> None:
    # When a creator's process commits a bet's creation and is killed before projecting
    run_child(_crasher.create_then_die, "crash-new", "maker")
    # Then the bet exists in the records only: heartbeats cannot see it, verify reports it
    assert db[TRANSITIONS].count_documents({"bet_id": "crash-new"}) == 1
    assert enforcer.bets_at(["new"], 10) == []
    (violation,) = enforcer.verify()
    assert "projection missing" in violation.problem
    # When the watchdog repairs
    assert enforcer.repair_all() == 1
    # Then the bet is listed where it was created, with its fields, and verify is clean
    (bet,) = enforcer.bets_at(["new"], 10)
    assert isinstance(bet, Bet) and (bet.bet_id, bet.seq, bet.fields) == ("crash-new", 0, {"k": 1})
    assert enforcer.verify() == []
