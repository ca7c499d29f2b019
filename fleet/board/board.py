"""The board's store half: filing, changing and reading tasks as unique inserts (see :mod:`fleet.board`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from pymongo import DESCENDING
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fleet.board.models import (
    ACTIVE_STATUSES,
    EventKind,
    Origin,
    Task,
    TaskEvent,
    TaskStatus,
    event_id,
    task_id_for,
)
from fleet.board.rules import apply, filed_event, latest, origin_of, require, status_of
from fleet.constants import TASK_EVENTS, TASKS
from fleet.errors import BoardError, CorruptTask, TaskClosed, UnknownTask, validation_problem
from fleet.store import clock, storage_problem, translated

Doc = dict[str, Any]

logger = logging.getLogger("fleet.board")

#: How many lost races a single change retries before giving up (each loss means someone won).
RACE_ATTEMPTS = 32


class Board:
    """The task board over the shared database; safe to use from many processes at once."""

    def __init__(self, db: Database[Doc], *, now: Callable[[], datetime] | None = None) -> None:
        self._tasks: Collection[Doc] = db[TASKS]
        self._events: Collection[Doc] = db[TASK_EVENTS]
        self._clock = now or clock(db).now  # the store's clock: events compare across hosts

    # --- filing -------------------------------------------------------------------

    def file(
        self,
        *,
        assignee: str,
        origin: Origin | str,
        dedupe_key: str,
        title: str,
        detail: Mapping[str, Any] | None = None,
        by: str,
    ) -> tuple[Task, bool]:
        """File a task unless one with ``dedupe_key`` is open; return it and whether it is new."""
        origin = origin_of(origin)
        require(assignee=assignee, dedupe_key=dedupe_key, title=title, by=by)
        payload = dict(detail or {})
        _check_storable(payload, "detail")
        for _ in range(RACE_ATTEMPTS):
            latest = self._latest_of_key(dedupe_key)
            if latest is not None and latest.is_open:
                return latest, False
            generation = 0 if latest is None else latest.generation + 1
            task = self._new_task(assignee, origin, dedupe_key, generation, title, payload, by)
            if self._insert(self._tasks, _task_doc(task)):
                self._insert(self._events, _event_doc(filed_event(task)))
                return task, True
            existing = self.get(task.task_id)  # lost the race for this generation
            if existing.is_open:
                return existing, False
        raise BoardError(f"filing {dedupe_key!r}: lost {RACE_ATTEMPTS} races in a row, try again")

    def _new_task(
        self,
        assignee: str,
        origin: Origin,
        dedupe_key: str,
        generation: int,
        title: str,
        detail: dict[str, Any],
        by: str,
    ) -> Task:
        now = self._clock()
        return Task(
            task_id=task_id_for(dedupe_key, generation),
            dedupe_key=dedupe_key,
            generation=generation,
            assignee=assignee,
            origin=origin,
            status=TaskStatus.OPEN,
            title=title,
            detail=detail,
            filed_by=by,
            seq=0,
            created_at=now,
            updated_at=now,
        )

    def _latest_of_key(self, dedupe_key: str) -> Task | None:
        doc = self._find_one(self._tasks, {"dedupe_key": dedupe_key}, sort=("generation", DESCENDING))
        return None if doc is None else self._current(doc)

    # --- reading ------------------------------------------------------------------

    def open_with_key(self, dedupe_key: str) -> Task | None:
        """The open task filed under ``dedupe_key``, if any."""
        latest = self._latest_of_key(dedupe_key)
        return latest if latest is not None and latest.is_open else None

    def get(self, task_id: str) -> Task:
        """The task as of its latest event, or :class:`UnknownTask`."""
        doc = self._find_one(self._tasks, {"_id": task_id})
        if doc is None:
            raise UnknownTask(task_id)
        return self._current(doc)

    def open_for(self, assignee: str) -> list[Task]:
        """Every task assigned to ``assignee`` that is not closed, oldest first."""
        return self._open({"assignee": assignee})

    def open_tasks(self, origin: Origin | str | None = None) -> list[Task]:
        """Every task that is not closed (of one origin, if given), oldest first."""
        return self._open({} if origin is None else {"origin": str(origin_of(origin))})

    def history(self, task_id: str) -> list[dict[str, Any]]:
        """The task's events in order: filed, status changes, comments, closed."""
        self.get(task_id)
        return [event.model_dump() for event in self._events_of(task_id)]

    def _open(self, query: Doc) -> list[Task]:
        """Tasks not closed, as of their latest events; corrupt ones are logged and skipped."""
        query = {**query, "status": {"$in": [str(s) for s in ACTIVE_STATUSES]}}
        docs = self._find(self._tasks, query)
        if not docs:
            return []  # the common case on a heartbeat: no second round trip
        events: dict[object, list[Doc]] = {}
        for event in self._find(self._events, {"task_id": {"$in": [d["_id"] for d in docs]}}):
            events.setdefault(event.get("task_id"), []).append(event)
        tasks = [self._open_one(doc, events.get(doc["_id"], [])) for doc in docs]
        return sorted(
            (t for t in tasks if t is not None and t.is_open), key=lambda t: (t.created_at, t.task_id)
        )

    def _open_one(self, doc: Doc, events: list[Doc]) -> Task | None:
        try:
            return self._catch_up(_parse_task(doc), latest(map(_parse_event, events)))
        except CorruptTask as exc:
            logger.warning("task board: skipping %s", exc)
            return None

    def _current(self, doc: Doc) -> Task:
        """Parse a task document and bring it up to its latest event."""
        task = _parse_task(doc)
        return self._catch_up(task, latest(self._events_of(task.task_id)))

    def _catch_up(self, task: Task, latest: TaskEvent | None) -> Task:
        """Apply ``latest`` if the cached document is behind it, and repair the cache."""
        if latest is None or latest.seq <= task.seq:
            return task
        task = apply(task, latest)
        self._project(task)
        return task

    def _events_of(self, task_id: str) -> list[TaskEvent]:
        docs = self._find(self._events, {"task_id": task_id})
        return sorted((_parse_event(doc) for doc in docs), key=lambda e: e.seq)

    # --- changing -----------------------------------------------------------------

    def set_status(self, task_id: str, status: TaskStatus | str, *, by: str, note: str = "") -> Task:
        """Move the task to ``status``; ``done`` closes it (``note`` is the reason)."""
        target = status_of(status)
        if target is TaskStatus.DONE:
            return self.close(task_id, by=by, reason=note or "done")
        return self._change(task_id, EventKind.STATUS, target, by=by, note=note)

    def close(self, task_id: str, *, by: str, reason: str) -> Task:
        """Close the task for good; :class:`TaskClosed` if it already is."""
        return self._change(task_id, EventKind.CLOSED, TaskStatus.DONE, by=by, note=reason)

    def comment(self, task_id: str, *, by: str, note: str) -> Task:
        """Add a comment to an open task's history."""
        return self._change(task_id, EventKind.COMMENT, None, by=by, note=note)

    def close_resolved(self, origin: Origin | str, still_present: set[str], *, by: str) -> list[Task]:
        """Close every open task of ``origin`` whose dedupe key is not in ``still_present``.

        Tasks close themselves when the condition that filed them is gone. Returns
        the tasks this call closed (a task someone else closed meanwhile is skipped).
        """
        closed: list[Task] = []
        for task in self.open_tasks(origin):
            if task.dedupe_key in still_present:
                continue
            try:
                closed.append(
                    self._change(
                        task.task_id,
                        EventKind.AUTO_CLOSED,
                        TaskStatus.DONE,
                        by=by,
                        note="resolved: the condition that filed it is gone",
                    )
                )
            except TaskClosed:
                continue
        return closed

    def _change(
        self, task_id: str, kind: EventKind, status: TaskStatus | None, *, by: str, note: str
    ) -> Task:
        """Append one event after the task's latest; retry when another writer got there first."""
        require(by=by)
        for _ in range(RACE_ATTEMPTS):
            task = self.get(task_id)
            if not task.is_open:
                raise TaskClosed(task_id)
            event = TaskEvent(
                task_id=task_id,
                seq=task.seq + 1,
                kind=kind,
                status=status or task.status,
                from_status=task.status,
                by=by,
                note=note,
                at=self._clock(),
            )
            if self._insert(self._events, _event_doc(event)):
                updated = apply(task, event)
                self._project(updated)
                return updated
        raise BoardError(f"board task {task_id!r}: lost {RACE_ATTEMPTS} races in a row, try again")

    def _project(self, task: Task) -> None:
        """Write the task's state to its cached document unless a newer state is there."""
        fields = _task_doc(task)
        fields.pop("_id")
        self._update(self._tasks, {"_id": task.task_id, "seq": {"$lt": task.seq}}, {"$set": fields})

    # --- store access: "unreachable" is transient, anything else the store refuses is not ---

    def _insert(self, collection: Collection[Doc], doc: Doc) -> bool:
        """Insert ``doc``; False when its ``_id`` exists (the one atomic decision)."""
        with _store():
            try:
                collection.insert_one(doc)
            except DuplicateKeyError:
                return False
        return True

    def _find_one(
        self, collection: Collection[Doc], query: Doc, sort: tuple[str, int] | None = None
    ) -> Doc | None:
        with _store():
            return collection.find_one(query, sort=[sort] if sort else None)

    def _find(self, collection: Collection[Doc], query: Doc) -> list[Doc]:
        with _store():
            return list(collection.find(query))

    def _update(self, collection: Collection[Doc], query: Doc, update: Doc) -> None:
        with _store():
            collection.update_one(query, update)


def _store() -> AbstractContextManager[None]:
    """Translate store failures: unreachable -> LedgerUnavailable, else :class:`BoardError`."""
    return translated("task board", refused=BoardError)


# --- documents ---------------------------------------------------------------------


def _task_doc(task: Task) -> Doc:
    return {"_id": task.task_id, **_plain(task.model_dump(exclude={"task_id"}))}


def _event_doc(event: TaskEvent) -> Doc:
    return {"_id": event_id(event.task_id, event.seq), **_plain(event.model_dump())}


def _plain(fields: Doc) -> Doc:
    """Enum members as their plain string values, as the store keeps them."""
    return {key: str(v) if isinstance(v, StrEnum) else v for key, v in fields.items()}


def _parse_task(doc: Doc) -> Task:
    task_id = str(doc.get("_id"))
    try:
        return Task.model_validate({**doc, "task_id": task_id})
    except ValidationError as exc:
        raise CorruptTask(task_id, validation_problem(exc)) from None


def _parse_event(doc: Doc) -> TaskEvent:
    try:
        return TaskEvent.model_validate(doc)
    except ValidationError as exc:
        task_id = str(doc.get("task_id", doc.get("_id")))
        raise CorruptTask(task_id, f"event {doc.get('_id')!r}: {validation_problem(exc)}") from None


def _check_storable(value: Any, where: str) -> None:
    """Reject what FerretDB cannot store: keys with ``.`` or a leading ``$``, nested lists."""
    problem = storage_problem(value, where)
    if problem:
        raise BoardError(f"cannot be stored: {problem}")
