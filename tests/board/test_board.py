"""The task board: dedupe, re-filing, self-closing tasks, recorded history, clear errors."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from fleet.board import Board, EventKind, Origin, TaskStatus, task_id_for
from fleet.constants import TASK_EVENTS, TASKS
from fleet.errors import BoardError, CorruptTask, LedgerUnavailable, TaskClosed, UnknownTask


@pytest.fixture
def board(db: Database[dict[str, Any]]) -> Board:
    return Board(db)


def file(board: Board, key: str = "drift:spec:lp_builder", **changes: Any) -> Any:
    args: dict[str, Any] = {
        "assignee": "lp_builder",
        "origin": Origin.DRIFT,
        "dedupe_key": key,
        "title": f"update the spec ({key})",
        "detail": {"spec_version": "0.9"},
        "by": "ceo",
        **changes,
    }
    return board.file(**args)


# --- filing and dedupe ------------------------------------------------------------


def test_filing_creates_an_open_task_with_its_history(board: Board) -> None:
    task, new = file(board)
    assert new is True
    assert task.task_id == "drift:spec:lp_builder#0" == task_id_for(task.dedupe_key, 0)
    assert (task.status, task.origin, task.assignee, task.filed_by) == ("open", "drift", "lp_builder", "ceo")
    assert task.detail == {"spec_version": "0.9"}
    assert task.closed_at is None and task.closed_reason is None
    assert board.get(task.task_id) == task
    [filed] = board.history(task.task_id)
    assert (filed["kind"], filed["status"], filed["by"], filed["seq"]) == ("filed", "open", "ceo", 0)


def test_filing_the_same_key_again_returns_the_open_task(board: Board, db: Database[Any]) -> None:
    # Given an open task for a key
    first, _ = file(board)
    board.set_status(first.task_id, TaskStatus.IN_PROGRESS, by="lp_builder")
    # When the same condition is reported again, even with another title and assignee
    again, new = file(board, title="something else", assignee="other")
    # Then nothing new is filed: the open task comes back as it is now
    assert new is False
    assert again.task_id == first.task_id
    assert again.status is TaskStatus.IN_PROGRESS
    assert db[TASKS].count_documents({}) == 1


def test_different_keys_are_different_tasks(board: Board) -> None:
    a, _ = file(board, "k:a")
    b, new = file(board, "k:b")
    assert new and a.task_id != b.task_id
    assert [t.task_id for t in board.open_tasks()] == [a.task_id, b.task_id]


def test_a_closed_key_is_filed_again_as_a_new_generation(board: Board) -> None:
    # Given a task that was filed and closed
    first, _ = file(board)
    board.close(first.task_id, by="lp_builder", reason="spec updated")
    # When the condition comes back
    second, new = file(board)
    # Then a new task is filed, the old one stays closed
    assert new is True
    assert (second.task_id, second.generation) == ("drift:spec:lp_builder#1", 1)
    assert board.get(first.task_id).status is TaskStatus.DONE
    assert [t.task_id for t in board.open_tasks()] == [second.task_id]
    # And filing once more still dedupes against the new generation
    assert file(board) == (second, False)


def test_keys_may_contain_the_separator(board: Board) -> None:
    a, _ = file(board, "x#0")
    b, _ = file(board, "x")
    assert {a.task_id, b.task_id} == {"x#0#0", "x#0"}


# --- status changes and history ---------------------------------------------------


def test_status_changes_are_recorded_in_order(board: Board) -> None:
    task, _ = file(board)
    board.set_status(task.task_id, "in_progress", by="lp_builder", note="on it")
    board.set_status(task.task_id, TaskStatus.BLOCKED, by="lp_builder", note="waiting for the pipeline")
    board.comment(task.task_id, by="ceo", note="pipeline change is merged")
    done = board.set_status(task.task_id, TaskStatus.DONE, by="lp_builder", note="spec at 1.0")
    assert done.status is TaskStatus.DONE and done.closed_reason == "spec at 1.0"
    assert done.closed_at is not None and done.closed_at == done.updated_at
    steps = [
        (e["seq"], e["kind"], e["from_status"], e["status"], e["by"]) for e in board.history(task.task_id)
    ]
    assert steps == [
        (0, "filed", None, "open", "ceo"),
        (1, "status", "open", "in_progress", "lp_builder"),
        (2, "status", "in_progress", "blocked", "lp_builder"),
        (3, "comment", "blocked", "blocked", "ceo"),
        (4, "closed", "blocked", "done", "lp_builder"),
    ]
    assert board.get(task.task_id) == done


def test_history_is_append_only(board: Board, db: Database[Any]) -> None:
    task, _ = file(board)
    before = list(db[TASK_EVENTS].find({"task_id": task.task_id}))
    board.set_status(task.task_id, TaskStatus.IN_PROGRESS, by="lp_builder")
    after = {doc["_id"]: doc for doc in db[TASK_EVENTS].find({"task_id": task.task_id})}
    assert all(after[doc["_id"]] == doc for doc in before)
    assert len(after) == len(before) + 1


def test_a_closed_task_never_changes_again(board: Board) -> None:
    task, _ = file(board)
    board.close(task.task_id, by="ceo", reason="fixed")
    with pytest.raises(TaskClosed, match="already closed"):
        board.close(task.task_id, by="ceo", reason="again")
    with pytest.raises(TaskClosed):
        board.set_status(task.task_id, TaskStatus.OPEN, by="ceo")
    with pytest.raises(TaskClosed):
        board.comment(task.task_id, by="ceo", note="late")
    assert board.get(task.task_id).closed_reason == "fixed"
    assert len(board.history(task.task_id)) == 2


def test_open_for_lists_only_the_assignees_open_tasks(board: Board) -> None:
    mine, _ = file(board, "k:1")
    closed, _ = file(board, "k:2")
    board.close(closed.task_id, by="ceo", reason="done")
    blocked, _ = file(board, "k:3")
    board.set_status(blocked.task_id, TaskStatus.BLOCKED, by="lp_builder")
    file(board, "k:4", assignee="someone_else")
    assert [t.task_id for t in board.open_for("lp_builder")] == [mine.task_id, blocked.task_id]
    assert board.open_for("nobody") == []


def test_open_tasks_by_origin(board: Board) -> None:
    drift, _ = file(board, "k:drift")
    stranded, _ = file(board, "k:stranded", origin="stranded")
    assert [t.task_id for t in board.open_tasks(Origin.DRIFT)] == [drift.task_id]
    assert [t.task_id for t in board.open_tasks("stranded")] == [stranded.task_id]
    assert len(board.open_tasks()) == 2


# --- tasks that close themselves --------------------------------------------------


def test_close_resolved_closes_tasks_whose_condition_is_gone(board: Board) -> None:
    # Given three drift tasks and a stranded one
    a, _ = file(board, "drift:a")
    b, _ = file(board, "drift:b")
    c, _ = file(board, "drift:c")
    board.set_status(c.task_id, TaskStatus.IN_PROGRESS, by="lp_builder")
    other, _ = file(board, "stranded:a", origin=Origin.STRANDED)
    # When the audit only finds drift "b" any more
    closed = board.close_resolved(Origin.DRIFT, {"drift:b"}, by="ceo")
    # Then "a" and "c" close themselves, "b" and the other origin's task stay open
    assert sorted(t.task_id for t in closed) == sorted([a.task_id, c.task_id])
    assert all(t.status is TaskStatus.DONE for t in closed)
    assert [t.task_id for t in board.open_tasks()] == [b.task_id, other.task_id]
    last = board.history(c.task_id)[-1]
    assert (last["kind"], last["from_status"], last["by"]) == (EventKind.AUTO_CLOSED, "in_progress", "ceo")
    # And running it again closes nothing more
    assert board.close_resolved(Origin.DRIFT, {"drift:b"}, by="ceo") == []


# --- the cached document lags behind the events -----------------------------------


def test_a_stale_task_document_is_repaired_from_the_events(board: Board, db: Database[Any]) -> None:
    # Given a task whose cached document lost a racing write (FerretDB updates are not atomic)
    task, _ = file(board)
    board.set_status(task.task_id, TaskStatus.BLOCKED, by="lp_builder")
    db[TASKS].update_one({"_id": task.task_id}, {"$set": {"status": "open", "seq": 0}})
    # When it is read
    current = board.get(task.task_id)
    # Then the events win and the document is repaired
    assert (current.status, current.seq) == (TaskStatus.BLOCKED, 1)
    assert db[TASKS].count_documents({"_id": task.task_id, "status": "blocked"}) == 1


def test_a_closed_task_with_a_stale_document_is_not_listed_or_deduped(
    board: Board, db: Database[Any]
) -> None:
    task, _ = file(board)
    board.close(task.task_id, by="ceo", reason="fixed")
    db[TASKS].update_one({"_id": task.task_id}, {"$set": {"status": "open", "seq": 0, "closed_at": None}})
    assert board.open_tasks() == []
    again, new = file(board)
    assert new and again.generation == 1


# --- errors -----------------------------------------------------------------------


def test_unknown_task(board: Board) -> None:
    for call in (
        lambda: board.get("nope#0"),
        lambda: board.history("nope#0"),
        lambda: board.close("nope#0", by="ceo", reason="x"),
        lambda: board.set_status("nope#0", "blocked", by="ceo"),
    ):
        with pytest.raises(UnknownTask, match="unknown board task 'nope#0'"):
            call()


def test_a_corrupt_task_document_is_a_clear_error(board: Board, db: Database[Any]) -> None:
    db[TASKS].insert_one({"_id": "bad#0", "dedupe_key": "bad", "assignee": "x", "status": "weird"})
    with pytest.raises(CorruptTask, match="board task 'bad#0' is corrupt") as info:
        board.get("bad#0")
    assert "more" in info.value.problem  # every problem is counted, the first one named


def test_a_corrupt_event_is_a_clear_error(board: Board, db: Database[Any]) -> None:
    task, _ = file(board)
    db[TASK_EVENTS].insert_one({"_id": f"{task.task_id}:1", "task_id": task.task_id, "seq": 1})
    with pytest.raises(CorruptTask, match=r"event '.*:1'"):
        board.get(task.task_id)


def test_listings_skip_corrupt_tasks(board: Board, db: Database[Any], caplog: Any) -> None:
    good, _ = file(board)
    db[TASKS].insert_one({"_id": "bad#0", "assignee": "lp_builder", "status": "open"})
    assert board.open_for("lp_builder") == [good]
    assert "bad#0" in caplog.text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"origin": "rumour"}, "unknown task origin 'rumour'"),
        ({"dedupe_key": ""}, "non-empty dedupe_key"),
        ({"by": ""}, "non-empty by"),
        ({"detail": {"a.b": 1}}, "cannot be stored: detail: key 'a.b'"),
        ({"detail": {"$x": 1}}, "cannot be stored: detail: key '\\$x'"),
        ({"detail": {"edges": [["a", "b"]]}}, r"detail.edges\[0\]: arrays may not nest"),
        ({"detail": {"tags": {"a", "b"}}}, "the store refused"),
    ],
)
def test_bad_filing_arguments(board: Board, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BoardError, match=message):
        file(board, **changes)


def test_unknown_status(board: Board) -> None:
    task, _ = file(board)
    with pytest.raises(BoardError, match="unknown task status 'later'"):
        board.set_status(task.task_id, "later", by="ceo")


def test_an_unreachable_store_is_transient(stack: Any) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient("mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=200)
    try:
        with pytest.raises(LedgerUnavailable, match="task board"):
            Board(client["fleet_test"]).open_tasks()
    finally:
        client.close()
