"""The task board: work for agents (and people), deduplicated, with an append-only history.

The board owns task state ("one source of truth per resource"). A task is filed
for a *dedupe key* (say ``drift:spec:lp_builder``); while a task with that key is
not closed, filing the key again returns the open task instead of a second one.

Why it is race-safe on FerretDB v1, where conditional updates are not atomic
and the only atomic primitive is an insert into a unique index:

- *Filing* inserts ``_id = "<dedupe_key>#<generation>"``, where ``generation``
  is one more than the key's latest task, and is only tried once that task is
  seen closed. Two filers of the same generation collide on ``_id``: one wins,
  the other gets the winner's task back.
- *Every change* to a task (status, close, comment) inserts an event with
  ``_id = "<task_id>:<seq>"``, ``seq`` one more than the task's latest event: two
  concurrent changes collide, the loser re-reads and retries. So the events of a
  task form one chain, each link checked against the state before it, and
  nothing can follow a close: **closing is final**.
- Together: a new generation is filed only after the previous one is closed,
  and closed tasks never reopen, so there is never more than one open task per
  key. The task document is a projection of its events (a cache) for listing;
  readers repair it from the events when a racing write left it behind.
"""

from fleet.board.board import RACE_ATTEMPTS, Board
from fleet.board.models import ACTIVE_STATUSES, EventKind, Origin, Task, TaskEvent, TaskStatus, task_id_for

__all__ = [
    "ACTIVE_STATUSES",
    "RACE_ATTEMPTS",
    "Board",
    "EventKind",
    "Origin",
    "Task",
    "TaskEvent",
    "TaskStatus",
    "task_id_for",
]
