"""``fleet.bet(agent, bet_id, seq, parent, view[, stamp])``: one bet of a fanned-out heartbeat.

Sent only by a polling heartbeat of ``agent`` (``parent``, :mod:`fleet.runtime.fanout`),
with the bet as it listed it (``view``) and what it read once (``stamp``: its instructions
hash and debug switch; messages sent before the stamp existed carry five arguments);
routed to the agent's queue like its heartbeats, and run under the agent's own time limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from celery import Task
from pydantic import ValidationError

from fleet.app import celery_app
from fleet.constants import BET_PART_REASON, BET_TASK
from fleet.definitions.catalogue import get_registry
from fleet.errors import BadTaskArguments, FleetError, first_line
from fleet.ledger import Bet
from fleet.runtime import wake
from fleet.runtime.heartbeat import run_bet, stored_part
from fleet.runtime.records import Status, record_unrun
from fleet.runtime.runtime import get_runtime
from fleet.settings import get_settings
from fleet.store import database

from .heartbeat import RETRYING, AgentRequest

app = celery_app.get_app()


@dataclass(frozen=True)
class BetArguments:
    """A bet task's arguments, checked."""

    agent: str
    view: Bet
    parent: str
    instructions_hash: str | None = None
    debug: bool = False


def parse_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> BetArguments:
    """Check a bet task's arguments; anything off raises one :class:`BadTaskArguments`."""
    if kwargs or len(args) not in (5, 6):
        shape = f"{len(args)} arguments" + (f" and keywords {sorted(kwargs)}" if kwargs else "")
        raise BadTaskArguments(f"{BET_TASK}: expected (agent, bet_id, seq, parent, view, stamp), got {shape}")
    agent, bet_id, seq, parent, view = args[:5]
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
    if len(args) == 5:
        return BetArguments(agent, bet, parent)
    return BetArguments(agent, bet, parent, *_stamp(args[5]))


def _stamp(stamp: Any) -> tuple[str | None, bool]:
    if not isinstance(stamp, dict) or set(stamp) - {"instructions_hash", "debug"}:
        raise BadTaskArguments(f"{BET_TASK}: stamp must be {{instructions_hash, debug}}, got {stamp!r:.200}")
    instructions, debug = stamp.get("instructions_hash"), stamp.get("debug", False)
    if not (instructions is None or isinstance(instructions, str)) or not isinstance(debug, bool):
        raise BadTaskArguments(f"{BET_TASK}: stamp has a bad instructions_hash or debug: {stamp!r:.200}")
    return instructions, debug


class BetRequest(AgentRequest):
    """A received bet task, under its agent's own time limits (as its heartbeat)."""

    def agent_limits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, float] | None:
        try:
            return get_registry().require(parse_arguments(args, kwargs).agent).time_limits
        except FleetError:
            return None  # the task body reports bad arguments, once

    def record_killed(self, error: str) -> None:
        try:
            parsed = parse_arguments(tuple(self.args or ()), dict(self.kwargs or {}))
            db = database(get_settings())
            record_unrun(
                db, self.id, parsed.agent, BET_PART_REASON, Status.KILLED, error, parent=parsed.parent
            )
        except FleetError:
            pass  # bad arguments or the store down: Celery's own log line still says what happened


@app.task(
    name=BET_TASK,
    bind=True,
    typing=False,
    # Same split as the heartbeat: store or broker down -> retry with backoff; a failed
    # external call or bad input never.
    **RETRYING,
    Request=BetRequest,
)
def bet(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Process one bet and return its part record's outcome."""
    parsed = parse_arguments(args, kwargs)
    runtime = get_runtime()
    task_id = self.request.id
    # A redelivery of a bet task that finished (its late ack lost) does nothing again.
    record = stored_part(runtime, task_id) if task_id else None
    if record is None:
        record = run_bet(
            runtime, parsed.agent, parsed.view, parsed.parent, task_id, parsed.instructions_hash, parsed.debug
        )
        wake.after_heartbeat(runtime, record)  # its slot is free: a backlog wakes the agent again
    return {
        "agent": parsed.agent,
        "bet_id": parsed.view.bet_id,
        "status": record.status,
        "actions": record.actions,
    }
