"""OS processes race on the same bet: sixteen movers (exactly one wins each round), and a mover
against processes marking attempts on an older view (the move is never undone)."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter
from typing import Any

import pytest

from fleet.constants import REFUSALS, TRANSITIONS
from fleet.errors import StaleBet
from fleet.ledger import Enforcer

from . import _racer
from .pipelines import small

PROCESSES = 16
ROUNDS = 200


@pytest.mark.slow
@pytest.mark.timeout(600)  # ~2 min on an idle 2-core machine; headroom for a loaded one
def test_sixteen_racing_processes_produce_exactly_one_winner_per_round(db, enforcer: Enforcer) -> None:
    # Given one fresh bet per round, all at seq 0
    bet_ids = [
        enforcer.create_bet("maker", {"round": r}, bet_id=f"race-{r:03d}").bet_id for r in range(ROUNDS)
    ]
    # When 16 spawned processes, released together by a barrier each round, all try to move it
    started = time.monotonic()
    outcomes = run_racers(bet_ids)
    elapsed = time.monotonic() - started
    # Then each round has exactly one winner and every loser was refused as stale
    records = Counter(doc["bet_id"] for doc in db[TRANSITIONS].find({}, {"bet_id": 1}))
    won: Counter[str] = Counter()
    for round_, bet_id in enumerate(bet_ids):
        tally = Counter(outcomes[round_])
        winners = [o for o in tally if o.startswith("won:")]
        assert len(winners) == 1 and tally[winners[0]] == 1, (bet_id, tally)
        assert tally[StaleBet.__name__] == PROCESSES - 1, (bet_id, tally)
        # And the ledger holds the creation plus the winner's move, projected
        _, stage, seq = winners[0].split(":")
        assert records[bet_id] == 2, (bet_id, records[bet_id])
        bet = enforcer.get(bet_id)
        assert (bet.stage, bet.seq) == (stage, int(seq))
        won[stage] += 1
    # And every loss is on record, and the whole ledger verifies clean
    assert db[REFUSALS].count_documents({"reason": StaleBet.reason}) == ROUNDS * (PROCESSES - 1)
    assert enforcer.verify() == []
    print(f"\n{ROUNDS} rounds x {PROCESSES} processes in {elapsed:.1f}s; winning targets: {dict(won)}")


TOUCHERS = 4
TOUCH_ROUNDS = 60


def test_attempts_marked_on_a_stale_view_never_put_a_moved_bet_back(db, enforcer: Enforcer) -> None:
    # Given fresh bets at seq 0, each listed (seq 0) by a mover and by 4 other processes
    bet_ids = [
        enforcer.create_bet("maker", {"round": r}, bet_id=f"touch-{r:03d}").bet_id
        for r in range(TOUCH_ROUNDS)
    ]
    # When, released together, the mover moves each bet while the others mark attempts on
    # their seq-0 view (a stay or a failed call), several times each
    outcomes = run_racers(bet_ids, _racer.touch_or_move, TOUCHERS + 1)
    # Then every move landed and every projection as stored (not repaired on read) is at the
    # move: a touch never wrote the older bet back, on FerretDB's non-atomic updates either
    for round_, bet_id in enumerate(bet_ids):
        assert sorted(outcomes[round_]) == ["moved:1", *["touched"] * TOUCHERS], (bet_id, outcomes[round_])
    stored = enforcer.ledger.raw_projections()
    lagging = {b: (stored[b]["seq"], stored[b]["stage"]) for b in bet_ids if stored[b]["seq"] != 1}
    assert lagging == {}
    assert all(stored[b]["stage"] == "checked" for b in bet_ids)
    assert enforcer.verify() == []


def run_racers(
    bet_ids: list[str], body: Any = _racer.race, processes: int = PROCESSES
) -> dict[int, list[str]]:
    """Run ``processes`` racers of ``body`` to the end; return round -> every racer's outcome."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    racers = [
        ctx.Process(target=body, args=(i, small(), bet_ids, barrier, results), daemon=True)
        for i in range(processes)
    ]
    for racer in racers:
        racer.start()
    by_round: dict[int, list[str]] = {r: [] for r in range(len(bet_ids))}
    try:
        for _ in racers:
            _index, outcomes = results.get(timeout=600)
            for round_, outcome in outcomes:
                assert round_ >= 0, outcome
                by_round[round_].append(outcome)
    except queue.Empty:
        pytest.fail("a racer never reported")
    finally:
        for racer in racers:
            racer.join(timeout=30)
            if racer.is_alive():
                racer.kill()
        results.close()
    return by_round
