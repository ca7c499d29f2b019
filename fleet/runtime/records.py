"""Heartbeat records: the one owner of the ``heartbeats`` and ``heartbeat_parts`` collections.

A heartbeat writes one record when it ends (also when it did not run: skipped, refused,
expired, killed), keyed by its id (Celery's task id), and logs it as one compact line.
A fanned-out bet task writes a *part* record into its own collection (``parent`` = the
heartbeat that dispatched it), so parts never count as heartbeats in any figure or metric;
:func:`parts_summary` sums a heartbeat's parts. Every other module reads records through
the functions here.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from fleet import logs
from fleet.constants import HEARTBEAT_PARTS, HEARTBEATS
from fleet.errors import LedgerUnavailable, first_line
from fleet.store import Document, clock, reading, translated

#: Seconds the final record write keeps retrying a store that is down, before the record
#: is given up (it is still in the log line): re-running the work for it would be worse.
RECORD_WRITE_WINDOW_S = 20.0


class Status(StrEnum):
    """How a heartbeat (or a part) ended; stored as its string value."""

    OK = "ok"
    #: The handler or a bet failed (a failed external call included): not retried as a task.
    FAILED = "failed"
    #: Not run: another heartbeat of the agent held its lock, or the agent is over budget.
    SKIPPED = "skipped"
    #: Not run: the shared protocols are invalid.
    REFUSED = "refused"
    #: Stopped at Celery's soft time limit.
    TIMEOUT = "timeout"
    #: Stopped because its agent lock was lost mid-run.
    LOCK_LOST = "lock_lost"
    #: Dropped unrun by Celery because it expired in the queue.
    EXPIRED = "expired"
    #: Killed by Celery's hard time limit.
    KILLED = "killed"
    #: Not run: Redis (the agent lock) was unreachable; retried without the broker.
    UNAVAILABLE = "unavailable"


@dataclass
class HeartbeatRecord:
    """What one heartbeat (or one fanned-out bet of it) did; stored and logged as one line."""

    heartbeat_id: str
    agent: str
    reason: str
    started_at: datetime
    spec_protocol_version: str
    status: str = Status.OK
    protocol_version: str | None = None
    protocol_hash: str | None = None
    instructions_hash: str | None = None
    actions: dict[str, int] = field(default_factory=dict)
    bets: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    trace: list[str] = field(default_factory=list)
    finished_at: datetime | None = None
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    #: Set on a part record: the heartbeat that dispatched this bet.
    parent: str | None = None

    @property
    def duration_s(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return round((end - self.started_at).total_seconds(), 3)

    @property
    def collection(self) -> str:
        """Where it is stored: parts apart from heartbeats."""
        return HEARTBEATS if self.parent is None else HEARTBEAT_PARTS

    def stop(self, status: Status, error: str | None) -> None:
        """End the record with ``status`` and why (None: nothing to explain)."""
        self.status, self.error = status, error

    def to_doc(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k != "heartbeat_id"}
        if self.parent is None:
            del doc["parent"]
        doc["status"] = str(self.status)
        return {"_id": self.heartbeat_id, **doc, "duration_s": self.duration_s}

    def line(self) -> str:
        text = logs.compact_line(
            self.started_at, self.agent, self.reason, self.status, self.actions, self.duration_s
        )
        return f"{text} error={self.error}" if self.error else text


def finish(db: Database[Document], record: HeartbeatRecord, overwrite: bool = True) -> None:
    """Log the record and store it; a store that stays down loses the record, not the work."""
    record.finished_at = clock(db).now()
    logs.emit(record.line(), record.trace)
    doc = record.to_doc()
    writing = Retrying(
        stop=stop_after_delay(RECORD_WRITE_WINDOW_S),
        wait=wait_exponential(multiplier=0.5, max=5),
        retry=retry_if_exception_type(LedgerUnavailable),
        reraise=True,
    )
    try:
        writing(write_record, db, doc, overwrite, record.collection)
    except LedgerUnavailable as exc:
        # Raising would make Celery run the whole heartbeat (or bet) again for a record.
        logs.emit(f"{record.line()} record-not-stored={first_line(exc)}", [])


def write_record(
    db: Database[Document], doc: Document, overwrite: bool = True, collection: str = HEARTBEATS
) -> None:
    """Store one record (keyed by the heartbeat id); ``overwrite`` an earlier one?"""
    with translated("heartbeat record"):
        try:
            db[collection].insert_one(doc)  # an insert: its cost does not grow with history
        except DuplicateKeyError:
            # Another delivery of this heartbeat finished first: the run that did the work wins,
            # a skipped copy never overwrites it.
            if overwrite:
                db[collection].replace_one({"_id": doc["_id"]}, doc)


def record_unrun(
    db: Database[Document],
    heartbeat_id: str,
    agent: str,
    reason: str,
    status: Status,
    error: str,
    parent: str | None = None,
) -> None:
    """Record a heartbeat (or part) that never ran (``expired``, ``killed``...); never overwrites."""
    now = clock(db).now()
    record = HeartbeatRecord(
        heartbeat_id=heartbeat_id,
        agent=agent,
        reason=reason,
        started_at=now,
        spec_protocol_version="",
        status=status,
        error=error,
        finished_at=now,
        parent=parent,
    )
    logs.emit(record.line())
    write_record(db, record.to_doc(), overwrite=False, collection=record.collection)


def stored_record(
    db: Database[Document], heartbeat_id: str, collection: str = HEARTBEATS
) -> HeartbeatRecord | None:
    """The stored record of heartbeat ``heartbeat_id``, or None if it never finished."""
    with translated("reading a heartbeat record"):
        doc = db[collection].find_one({"_id": heartbeat_id})
    if doc is None:
        return None
    known = {f.name for f in fields(HeartbeatRecord)} - {"heartbeat_id"}
    kept: dict[str, Any] = {k: v for k, v in doc.items() if k in known}
    return HeartbeatRecord(heartbeat_id=heartbeat_id, **kept)


def latest(db: Database[Document], agent: str, wanted: list[str]) -> Document | None:
    """The ``wanted`` fields of the agent's most recent heartbeat record, or None."""
    with reading("heartbeats"):
        projection = dict.fromkeys(wanted, 1)
        return db[HEARTBEATS].find_one({"agent": agent}, projection, sort=[("started_at", DESCENDING)])


def parts_summary(db: Database[Document], heartbeat_id: str) -> dict[str, int]:
    """A fanned-out heartbeat's outcome: its own actions plus the sum of its parts' actions."""
    with reading("fan-out parts"):
        parent = db[HEARTBEATS].find_one({"_id": heartbeat_id}, {"actions": 1}) or {}
        parts = list(db[HEARTBEAT_PARTS].find({"parent": heartbeat_id}, {"actions": 1}))
    total: Counter[str] = Counter()
    for part in parts:
        total.update(_int_actions(part.get("actions")))
    mine = _int_actions(parent.get("actions"))
    return {**mine, **{f"parts_{k}": v for k, v in total.items()}, "parts": len(parts)}


def _int_actions(actions: Any) -> dict[str, int]:
    """A stored ``actions`` map with its odd values dropped (documents are not trusted)."""
    if not isinstance(actions, dict):
        return {}
    return {k: int(v) for k, v in actions.items() if isinstance(v, int)}
