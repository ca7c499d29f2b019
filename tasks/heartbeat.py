"""``fleet.heartbeat(agent, reason="scheduled"|"adhoc"|"wake", debug=False)``: one task for every agent.

Sent by beat, by ``fleet trigger`` and by ``celery -A fleet call fleet.heartbeat
--args='["agent"]'``; the router puts it on the agent's queue either way.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from fleet import celery_app, wake
from fleet.constants import HEARTBEAT_REASONS, HEARTBEAT_TASK
from fleet.errors import TRANSIENT_ERRORS, BadTaskArguments, ConfigError, UnknownAgent
from fleet.heartbeat import get_runtime, run_heartbeat
from fleet.protocols import DEFAULT_TASK_RETRY, TaskRetryPolicy, load_protocols
from fleet.settings import get_settings

app = celery_app.get_app()


def task_retry_policy() -> TaskRetryPolicy:
    """The protocols' Celery-level retry numbers, read once when a worker imports this module.

    Celery fixes a task's retry options at definition time, so a change to
    ``task_retry`` applies when workers restart. ``celery -A fleet`` refuses to start on
    an invalid file (:mod:`fleet.celery`); any other importer falls back to the shipped
    defaults here (the heartbeat itself will refuse and say why).
    """
    try:
        return load_protocols(get_settings().protocols_dir).protocols.task_retry
    except ConfigError:
        return DEFAULT_TASK_RETRY


TASK_RETRY = task_retry_policy()


def parse_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str, bool]:
    """Check a heartbeat's arguments against the task's signature and types.

    Anything off raises one :class:`BadTaskArguments` (reported without a traceback).
    """
    try:
        bound = signature().bind(*args, **kwargs)
    except TypeError as exc:
        raise BadTaskArguments(f"{HEARTBEAT_TASK}: {exc}") from None
    bound.apply_defaults()
    agent, reason, debug = (
        bound.arguments["agent"],
        bound.arguments["reason"],
        bound.arguments["debug"],
    )
    if not isinstance(agent, str) or not agent:
        raise BadTaskArguments(f"{HEARTBEAT_TASK}: agent must be a non-empty string, got {agent!r}")
    if reason not in HEARTBEAT_REASONS:
        raise BadTaskArguments(f"{HEARTBEAT_TASK}: reason must be one of {HEARTBEAT_REASONS}, got {reason!r}")
    if not isinstance(debug, bool):
        raise BadTaskArguments(f"{HEARTBEAT_TASK}: debug must be true or false, got {debug!r}")
    return agent, reason, debug


class HeartbeatTask(Task):  # type: ignore[misc]
    """Checks every call's arguments (beat, ``fleet trigger``, ``celery call``) before the body runs.

    Celery calls a task's own ``__call__`` with the message's arguments as sent, so a
    wrong call becomes one clear :class:`BadTaskArguments` here instead of a TypeError.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        agent, reason, debug = parse_arguments(args, kwargs)
        return super().__call__(agent, reason=reason, debug=debug)


@app.task(
    name=HEARTBEAT_TASK,
    bind=True,
    base=HeartbeatTask,
    # Store or broker unreachable: retry the whole heartbeat (it is idempotent).
    autoretry_for=TRANSIENT_ERRORS,
    # Exponential backoff, capped, with jitter so retries of many agents do not align.
    retry_backoff=True,
    retry_backoff_max=TASK_RETRY.backoff_max_s,
    retry_jitter=True,
    # Give up after this many retries; the next scheduled heartbeat tries again anyway.
    max_retries=TASK_RETRY.max_retries,
    # Bad input is the sender's error: reported as a failure, logged without a traceback.
    throws=(BadTaskArguments, UnknownAgent, ConfigError),
    # Heartbeat outcomes are also kept as task results for `celery call` users.
    ignore_result=False,
)
def heartbeat(self: Task, agent: str, reason: str = "scheduled", debug: bool = False) -> dict[str, Any]:
    """Run one heartbeat of ``agent`` and return its compact record."""
    runtime = get_runtime()
    spec = runtime.registry.require(agent)
    heartbeat_id = self.request.id or uuid.uuid4().hex
    try:
        with wake.tracked(runtime, agent, heartbeat_id, reason, spec.time_limit):
            record = run_heartbeat(runtime, agent, reason, debug, heartbeat_id=heartbeat_id)
    except SoftTimeLimitExceeded:
        raise  # claims expire on their own; the next heartbeat takes the bets over
    wake.after_heartbeat(runtime, record)
    return {
        "agent": record.agent,
        "status": record.status,
        "actions": record.actions,
        "duration_s": record.duration_s,
        "error": record.error,
    }


def signature() -> inspect.Signature:
    """The task's public signature: the function's parameters without the bound task itself."""
    parameters = inspect.signature(heartbeat.__wrapped__).parameters.values()
    return inspect.Signature([p for p in parameters if p.name != "self"])
