"""The body of one racing process (spawned: it builds its own MongoClient after start)."""

from __future__ import annotations

from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

#: How long a racer waits for the others at a round's start line; the first round includes
#: the start-up of every spawned interpreter.
START_TIMEOUT_S = 180.0


def race(
    index: int, pipeline_data: dict[str, Any], bet_ids: list[str], barrier: Barrier, results: Queue[Any]
) -> None:
    """For each bet in turn: wait for every racer, then try to move it from seq 0.

    Even racers try the advance edge and odd ones the kill edge (both owned by the same
    agent), so each round is also a contest between two different target stages.
    """
    from fleet.ledger import Enforcer
    from fleet.pipeline import validate_pipeline
    from fleet.settings import get_settings
    from fleet.store import database

    enforcer = Enforcer(database(get_settings()), validate_pipeline(pipeline_data, "race"))
    to_stage = "checked" if index % 2 == 0 else "dropped"
    outcomes: list[tuple[int, str]] = []
    try:
        for round_, bet_id in enumerate(bet_ids):
            barrier.wait(timeout=START_TIMEOUT_S)
            try:
                bet = enforcer.advance(bet_id, to_stage, "checker", 0, verdict=f"racer {index}")
                outcomes.append((round_, f"won:{bet.stage}:{bet.seq}"))
            except Exception as exc:  # every outcome is data for the parent to judge
                outcomes.append((round_, type(exc).__name__))
    except Exception as exc:  # a broken barrier: report what we have and why we stopped
        outcomes.append((-1, f"aborted: {type(exc).__name__}: {exc}"))
    finally:
        results.put((index, outcomes))
