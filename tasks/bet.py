"""``fleet.bet(agent, bet_id, seq, parent, view)``: one bet of a fanned-out heartbeat (fleet.fanout).

Sent only by a polling heartbeat of ``agent`` (``parent``), with the bet as it listed it
(``view``); routed to the agent's queue like its heartbeats.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Task
from pydantic import ValidationError

from fleet import celery_app
from fleet.constants import BET_TASK
from fleet.errors import BadTaskArguments, first_line
from fleet.fanout import run_bet
from fleet.heartbeat import get_runtime
from fleet.ledger import Bet

from .heartbeat import RETRYING

app = celery_app.get_app()


def parse_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Bet, str]:
    """Check a bet task's arguments; anything off raises one :class:`BadTaskArguments`."""
    if kwargs or len(args) != 5:
        shape = f"{len(args)} arguments" + (f" and keywords {sorted(kwargs)}" if kwargs else "")
        raise BadTaskArguments(f"{BET_TASK}: expected (agent, bet_id, seq, parent, view), got {shape}")
    agent, bet_id, seq, parent, view = args
    if not all(isinstance(value, str) and value for value in (agent, bet_id, parent)):
        raise BadTaskArguments(f"{BET_TASK}: agent, bet_id and parent must be non-empty strings")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadTaskArguments(f"{BET_TASK}: seq must be a non-negative integer, got {seq!r}")
    try:
        # The view came as JSON and is read as JSON: strict models take ISO dates only there.
        bet = Bet.model_validate_json(json.dumps(view))
    except ValidationError as exc:
        raise BadTaskArguments(f"{BET_TASK}: view is not a bet: {first_line(exc)}") from None
    if (bet.bet_id, bet.seq) != (bet_id, seq):
        raise BadTaskArguments(
            f"{BET_TASK}: view is of {bet.bet_id!r} at seq {bet.seq}, not {bet_id!r} at {seq}"
        )
    return agent, bet, parent


@app.task(
    name=BET_TASK,
    bind=True,
    typing=False,
    # Same split as the heartbeat: store or broker down -> retry with backoff; a failed
    # external call or bad input never.
    **RETRYING,
)
def bet(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Process one bet and return its part record's outcome."""
    agent, view, parent = parse_arguments(args, kwargs)
    runtime = get_runtime()
    record = run_bet(runtime, agent, view, parent, self.request.id)
    return {"agent": agent, "bet_id": view.bet_id, "status": record.status, "actions": record.actions}
