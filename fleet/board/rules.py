"""The board's rules: how an event changes a task, and which argument values are accepted."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import TypeVar

from fleet.board.models import EventKind, Origin, Task, TaskEvent, TaskStatus
from fleet.errors import BoardError

E = TypeVar("E", bound=StrEnum)


def filed_event(task: Task) -> TaskEvent:
    return TaskEvent(
        task_id=task.task_id,
        seq=0,
        kind=EventKind.FILED,
        status=task.status,
        by=task.filed_by,
        note=task.title,
        at=task.created_at,
    )


def latest(events: Iterable[TaskEvent]) -> TaskEvent | None:
    return max(events, key=lambda e: e.seq, default=None)


def apply(task: Task, event: TaskEvent) -> Task:
    """The task's state after ``event``; events carry the full status, so the latest suffices."""
    closed = event.status is TaskStatus.DONE
    update = {"status": event.status, "seq": event.seq, "updated_at": event.at}
    update |= {
        "closed_at": event.at if closed else None,
        "closed_reason": event.note if closed else None,
    }
    return task.model_copy(update=update)


# --- argument checks ---------------------------------------------------------------


def choice(kind: type[E], value: E | str, what: str) -> E:
    """``value`` as a member of the enum ``kind``, or one BoardError listing the known ones."""
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise BoardError(f"unknown task {what} {value!r} (known: {known})") from None


def origin_of(origin: Origin | str) -> Origin:
    return choice(Origin, origin, "origin")


def status_of(status: TaskStatus | str) -> TaskStatus:
    return choice(TaskStatus, status, "status")


def require(**values: str) -> None:
    empty = [name for name, value in values.items() if not isinstance(value, str) or not value]
    if empty:
        raise BoardError(f"board task needs a non-empty {', '.join(empty)}")
