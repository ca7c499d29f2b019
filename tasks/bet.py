"""``fleet.bet(agent, bet_id, seq, parent)``: one bet of a fanned-out heartbeat (fleet.fanout).

Sent only by a polling heartbeat of ``agent``, with the task id it claimed the bet
under; routed to the agent's queue like its heartbeats.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from fleet import celery_app
from fleet.constants import BET_TASK
from fleet.errors import TRANSIENT_ERRORS, BadTaskArguments, ConfigError, UnknownAgent
from fleet.fanout import run_bet
from fleet.heartbeat import get_runtime

from .heartbeat import TASK_RETRY

app = celery_app.get_app()


def parse_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str, int, str]:
    """Check a bet task's arguments; anything off raises one :class:`BadTaskArguments`."""
    if kwargs or len(args) != 4:
        raise BadTaskArguments(
            f"{BET_TASK}: expected (agent, bet_id, seq, parent), got {len(args)} arguments"
        )
    agent, bet_id, seq, parent = args
    if not all(isinstance(value, str) and value for value in (agent, bet_id, parent)):
        raise BadTaskArguments(f"{BET_TASK}: agent, bet_id and parent must be non-empty strings")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadTaskArguments(f"{BET_TASK}: seq must be a non-negative integer, got {seq!r}")
    return agent, bet_id, seq, parent


@app.task(
    name=BET_TASK,
    bind=True,
    typing=False,
    # Same split as the heartbeat: store or broker down -> retry with backoff; bad input never.
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    retry_backoff_max=TASK_RETRY.backoff_max_s,
    retry_jitter=True,
    max_retries=TASK_RETRY.max_retries,
    throws=(BadTaskArguments, UnknownAgent, ConfigError),
)
def bet(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Process one bet and return its part record's outcome."""
    agent, bet_id, seq, parent = parse_arguments(args, kwargs)
    runtime = get_runtime()
    record = run_bet(runtime, agent, bet_id, seq, parent, self.request.id)
    return {"agent": agent, "bet_id": bet_id, "status": record.status, "actions": record.actions}
