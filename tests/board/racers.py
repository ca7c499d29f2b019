"""Process bodies for the board race tests (importable by "spawn" children: no test imports)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier
from typing import Any

from fleet.board import Board, Origin
from fleet.errors import TaskClosed
from fleet.store import mongo_client

#: Barrier waits give up after this long, so a dead racer fails the test instead of hanging it.
BARRIER_TIMEOUT_S = 60


def _board(url: str, db_name: str) -> tuple[Any, Board]:
    client = mongo_client(url)  # each process builds its own client after it starts
    return client, Board(client[db_name])


def _file(board: Board, key: str, racer: int) -> tuple[str, bool]:
    task, new = board.file(
        assignee="ceo", origin=Origin.ESCALATION, dedupe_key=key, title="race", by=f"racer{racer}"
    )
    return task.task_id, new


def _close(board: Board, task_id: str, racer: int) -> bool:
    try:
        board.close(task_id, by=f"racer{racer}", reason="race")
    except TaskClosed:
        return False
    return True


def rounds(url: str, db_name: str, key: str, n_rounds: int, barrier: Barrier, racer: int, out: Any) -> None:
    """Each round: all racers file ``key`` at once, the parent looks, then all race to close it."""
    client, board = _board(url, db_name)
    try:
        for round_ in range(n_rounds):
            barrier.wait(BARRIER_TIMEOUT_S)
            task_id, new = _file(board, key, racer)
            barrier.wait(BARRIER_TIMEOUT_S)  # the parent counts open tasks now
            barrier.wait(BARRIER_TIMEOUT_S)
            out.put((round_, racer, task_id, new, _close(board, task_id, racer)))
    finally:
        client.close()


def churn(url: str, db_name: str, key: str, iterations: int, barrier: Barrier, racer: int, out: Any) -> None:
    """No rounds: file ``key`` and close what came back, as fast as possible, against everyone."""
    client, board = _board(url, db_name)
    try:
        barrier.wait(BARRIER_TIMEOUT_S)
        for _ in range(iterations):
            task_id, new = _file(board, key, racer)
            out.put((racer, task_id, new, _close(board, task_id, racer)))
    finally:
        client.close()
