"""The bodies of racing processes (spawned: each builds its own MongoClient after start)."""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.ledger import Bet, Enforcer

#: How long a racer waits for the others at a round's start line; the first round includes
#: the start-up of every spawned interpreter.
START_TIMEOUT_S = 180.0
#: Touches each toucher makes per round, so some land after the move whatever the timing.
TOUCHES_PER_ROUND = 4


def race(
    index: int, pipeline_data: dict[str, Any], bet_ids: list[str], barrier: Barrier, results: Queue[Any]
) -> None:
    """For each bet in turn: wait for every racer, then try to move it from seq 0.

    Even racers try the advance edge and odd ones the kill edge (both owned by the same
    agent), so each round is also a contest between two different target stages.
    """
    to_stage = "checked" if index % 2 == 0 else "dropped"

    def move(enforcer: Enforcer, bet_id: str, _view: Bet) -> str:
        bet = enforcer.advance(bet_id, to_stage, "checker", 0, verdict=f"racer {index}")
        return f"won:{bet.stage}:{bet.seq}"

    _rounds(index, pipeline_data, bet_ids, barrier, results, move)


def touch_or_move(
    index: int, pipeline_data: dict[str, Any], bet_ids: list[str], barrier: Barrier, results: Queue[Any]
) -> None:
    """For each bet: racer 0 moves it from seq 0; the others mark attempts on their seq-0 view.

    A toucher's view is read before the start line (as a heartbeat lists its bets first),
    so its touches may come before, during or after the move.
    """

    def step(enforcer: Enforcer, bet_id: str, view: Bet) -> str:
        if index == 0:
            moved = enforcer.advance(bet_id, "checked", "checker", 0, verdict="mover", view=view)
            return f"moved:{moved.seq}"
        for _ in range(TOUCHES_PER_ROUND):
            enforcer.ledger.touch(view)
        return "touched"

    _rounds(index, pipeline_data, bet_ids, barrier, results, step)


def _rounds(
    index: int,
    pipeline_data: dict[str, Any],
    bet_ids: list[str],
    barrier: Barrier,
    results: Queue[Any],
    step: Callable[[Enforcer, str, Bet], str],
) -> None:
    """Per bet: read its projection, wait at the start line, run ``step``; report every outcome."""
    from fleet.definitions.pipeline import validate_pipeline
    from fleet.ledger import Enforcer
    from fleet.settings import get_settings
    from fleet.store import database

    enforcer = Enforcer(database(get_settings()), validate_pipeline(pipeline_data, "race"))
    outcomes: list[tuple[int, str]] = []
    try:
        for round_, bet_id in enumerate(bet_ids):
            view = enforcer.ledger.projection(bet_id)
            assert view is not None and view.seq == 0, (bet_id, view)
            barrier.wait(timeout=START_TIMEOUT_S)
            try:
                outcomes.append((round_, step(enforcer, bet_id, view)))
            except Exception as exc:  # every outcome is data for the parent to judge
                outcomes.append((round_, type(exc).__name__))
    except Exception as exc:  # a broken barrier: report what we have and why we stopped
        outcomes.append((-1, f"aborted: {type(exc).__name__}: {exc}"))
    finally:
        results.put((index, outcomes))
