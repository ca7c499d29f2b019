"""The board's nouns: a task, its status and origin, and the events that form its history."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskStatus(StrEnum):
    """Where a task stands; ``done`` is final."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    BLOCKED = "blocked"
    DONE = "done"


#: Statuses of a task that is not closed (dedupe holds while a task is in one of these).
ACTIVE_STATUSES: tuple[TaskStatus, ...] = (
    TaskStatus.OPEN,
    TaskStatus.IN_PROGRESS,
    TaskStatus.BLOCKED,
)


class Origin(StrEnum):
    """Who or what filed a task; automatic origins close their tasks when resolved."""

    DRIFT = "drift"
    STRANDED = "stranded"
    REFUSAL_LOOP = "refusal_loop"
    ESCALATION = "escalation"
    MANUAL = "manual"


class EventKind(StrEnum):
    """What one history entry records."""

    FILED = "filed"
    STATUS = "status"
    CLOSED = "closed"
    AUTO_CLOSED = "auto_closed"
    COMMENT = "comment"


class Task(BaseModel):
    """One board task, as of its latest event."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task_id: str
    dedupe_key: str = Field(min_length=1)
    generation: int = Field(ge=0)
    assignee: str = Field(min_length=1)
    origin: Origin
    status: TaskStatus
    title: str
    detail: dict[str, Any] = Field(default_factory=dict)
    filed_by: str
    seq: int = Field(ge=0)
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    closed_reason: str | None = None

    @property
    def is_open(self) -> bool:
        """True until the task is closed (open, in progress or blocked)."""
        return self.status is not TaskStatus.DONE


class TaskEvent(BaseModel):
    """One entry of a task's append-only history; ``status`` is the status after it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    task_id: str
    seq: int = Field(ge=0)
    kind: EventKind
    status: TaskStatus
    from_status: TaskStatus | None = None
    by: str
    note: str = ""
    at: datetime


def task_id_for(dedupe_key: str, generation: int) -> str:
    """The ``_id`` of the ``generation``-th task filed for ``dedupe_key``."""
    return f"{dedupe_key}#{generation}"


def event_id(task_id: str, seq: int) -> str:
    return f"{task_id}:{seq}"
