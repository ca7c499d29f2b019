"""Races between OS processes: never two open tasks for one key, every task closed exactly once.

Each racer is a "spawn" process with its own pymongo client, so the only thing
the racers share is the real FerretDB, whose conditional updates are not atomic.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from pymongo.database import Database

from fleet.board import Board, TaskStatus, task_id_for
from fleet.constants import TASK_EVENTS, TASKS
from fleet.settings import get_settings

from . import racers

RACERS = 8
ROUNDS = 50
CHURN = 25
KEY = "escalation:race"

pytestmark = pytest.mark.slow


def run_racers(target: Callable[..., None], n_args: int, expected: int, parent: Any = None) -> list[Any]:
    """Start the racers, let ``parent(barrier)`` play along, collect ``expected`` results."""
    ctx = multiprocessing.get_context("spawn")
    parties = RACERS + (1 if parent else 0)
    barrier, out = ctx.Barrier(parties), ctx.Queue()
    settings = get_settings()
    procs = [
        ctx.Process(target=target, args=(settings.mongo_url, settings.mongo_db, KEY, n_args, barrier, i, out))
        for i in range(RACERS)
    ]
    for proc in procs:
        proc.start()
    try:
        if parent:
            parent(barrier)
        results = [out.get(timeout=120) for _ in range(expected)]
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * RACERS
    return results


def closed_events(db: Database[Any]) -> Counter[str]:
    kinds = Counter[str]()
    for event in db[TASK_EVENTS].find({"kind": "closed"}):
        kinds[event["task_id"]] += 1
    return kinds


def test_racing_filers_and_closers_in_lockstep(db: Database[Any]) -> None:
    # Given 8 processes that, 50 times over, all file the same key at once, then all close it
    board = Board(db)
    open_counts: list[int] = []

    def parent(barrier: Any) -> None:
        for _ in range(ROUNDS):
            barrier.wait(racers.BARRIER_TIMEOUT_S)
            barrier.wait(racers.BARRIER_TIMEOUT_S)  # every racer has filed
            open_counts.append(len(board.open_tasks()))
            barrier.wait(racers.BARRIER_TIMEOUT_S)

    results = run_racers(racers.rounds, ROUNDS, RACERS * ROUNDS, parent)
    by_round: dict[int, list[tuple[str, bool, bool]]] = defaultdict(list)
    for round_, _, task_id, new, closed in results:
        by_round[round_].append((task_id, new, closed))
    # Then after every round's filing exactly one task was open
    assert open_counts == [1] * ROUNDS
    # And in every round all racers got the same task, one of them filed it, one closed it
    for round_, seen in sorted(by_round.items()):
        assert {task_id for task_id, _, _ in seen} == {task_id_for(KEY, round_)}, round_
        assert sum(new for _, new, _ in seen) == 1, round_
        assert sum(closed for _, _, closed in seen) == 1, round_
    # And the store agrees: one task per generation, all closed, each exactly once
    assert db[TASKS].count_documents({}) == ROUNDS
    assert board.open_tasks() == []
    assert closed_events(db) == {task_id_for(KEY, g): 1 for g in range(ROUNDS)}


def test_racing_filers_and_closers_without_lockstep(db: Database[Any]) -> None:
    # Given 8 processes that each file the key and close what they got, 25 times, unsynchronised
    results = run_racers(racers.churn, CHURN, RACERS * CHURN)
    board = Board(db)
    tasks = sorted(
        (board.get(str(doc["_id"])) for doc in db[TASKS].find({"dedupe_key": KEY})),
        key=lambda t: t.generation,
    )
    # Then the generations are contiguous and every one was filed by exactly one racer
    assert [t.generation for t in tasks] == list(range(len(tasks)))
    assert sum(new for _, _, new, _ in results) == len(tasks)
    # And every task was closed exactly once, by one of the racers
    assert all(t.status is TaskStatus.DONE for t in tasks)
    assert closed_events(db) == {t.task_id: 1 for t in tasks}
    assert sum(closed for _, _, _, closed in results) == len(tasks)
    # And no two tasks were ever open at once: each was filed after the previous one closed
    for previous, task in zip(tasks, tasks[1:], strict=False):
        assert previous.closed_at is not None and previous.closed_at <= task.created_at
