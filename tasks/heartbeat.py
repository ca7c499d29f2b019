"""``fleet.heartbeat(agent, reason="scheduled"|"adhoc"|"wake", debug=False)``: one task for every agent.

Sent by beat, by ``fleet trigger`` and by ``celery -A fleet call fleet.heartbeat
--args='["agent"]'``; the router puts it on the agent's queue either way.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from celery import Task
from celery.signals import task_revoked
from celery.worker.request import Request

from fleet.app import celery_app
from fleet.constants import HEARTBEAT_REASONS, HEARTBEAT_TASK
from fleet.definitions.catalogue import get_registry
from fleet.definitions.protocols import DEFAULT_TASK_RETRY, TaskRetryPolicy, load_protocols
from fleet.errors import (
    CLIP_CHARS,
    TASK_RETRY_ERRORS,
    BadTaskArguments,
    ConfigError,
    FleetError,
    UnknownAgent,
    clipped,
    first_line,
)
from fleet.runtime import wake
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.records import Status, record_unrun
from fleet.runtime.runtime import get_runtime
from fleet.settings import get_settings
from fleet.store import database

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

#: Celery options of every fleet task over the shared state (heartbeats and fanned-out bets).
RETRYING: dict[str, Any] = {
    # Store or broker unreachable: retry the whole task (it is idempotent). Never for a
    # failed external call: that stays inside the heartbeat, on its record.
    "autoretry_for": TASK_RETRY_ERRORS,
    # Exponential backoff, capped, with jitter so retries of many agents do not align.
    "retry_backoff": True,
    "retry_backoff_max": TASK_RETRY.backoff_max_s,
    "retry_jitter": True,
    # Give up after this many retries; the next scheduled heartbeat tries again anyway.
    "max_retries": TASK_RETRY.max_retries,
    # Bad input is the sender's error: reported as a failure, logged without a traceback.
    "throws": (BadTaskArguments, UnknownAgent, ConfigError),
}


def parse_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str, bool]:
    """Check a heartbeat's arguments against the task's signature and types.

    Anything off raises one :class:`BadTaskArguments` (reported without a traceback).
    """
    try:
        bound = signature().bind(*args, **kwargs)
    except TypeError as exc:
        raise BadTaskArguments(f"{HEARTBEAT_TASK}: {first_line(exc, CLIP_CHARS * 2)}") from None
    bound.apply_defaults()
    agent, reason, debug = (
        bound.arguments["agent"],
        bound.arguments["reason"],
        bound.arguments["debug"],
    )
    if not isinstance(agent, str) or not agent:
        raise BadTaskArguments(f"{HEARTBEAT_TASK}: agent must be a non-empty string, got {clipped(agent)}")
    if reason not in HEARTBEAT_REASONS:
        raise BadTaskArguments(
            f"{HEARTBEAT_TASK}: reason must be one of {HEARTBEAT_REASONS}, got {clipped(reason)}"
        )
    if not isinstance(debug, bool):
        raise BadTaskArguments(f"{HEARTBEAT_TASK}: debug must be true or false, got {clipped(debug)}")
    return agent, reason, debug


def agent_time_limits(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, float] | None:
    """The (soft, hard) time limits of the agent a heartbeat is for; None if the arguments are bad."""
    try:
        agent = parse_arguments(tuple(args), dict(kwargs))[0]
        return get_registry().require(agent).time_limits
    except FleetError:
        return None  # the task body reports bad arguments, once


class AgentRequest(Request):  # type: ignore[misc]
    """A received task of one agent: Celery enforces the agent's own limits, whoever sent it.

    Beat, ``fleet trigger`` and ``celery call`` alike: the worker reads the agent from
    the message and sets the soft and hard limits it runs under (a sender's explicit
    ``soft_time_limit``/``time_limit`` wins). Celery's pool enforces them: SIGUSR1 raises
    ``SoftTimeLimitExceeded`` in the task, and at the hard limit the process is killed.
    Subclasses say how the agent is read from the arguments and how a kill is recorded.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not any(getattr(self, "time_limits", None) or ()):
            limits = self.agent_limits(tuple(self.args or ()), dict(self.kwargs or {}))
            if limits is not None:
                soft, hard = limits
                self.time_limits = (hard, soft)  # Celery's order

    def agent_limits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, float] | None:
        """The (soft, hard) limits of the task's agent; None when the arguments are bad."""
        raise NotImplementedError

    def record_killed(self, error: str) -> None:
        """Say on the task's record that Celery's hard limit killed it."""
        raise NotImplementedError

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Celery's hard limit killed the task's process: say so on its record."""
        super().on_timeout(soft, timeout)
        if not soft:
            self.record_killed(
                f"hard time limit ({timeout:g}s) reached: process killed; its claims and lock lapse"
            )


class HeartbeatRequest(AgentRequest):
    """A received heartbeat, under its agent's own time limits."""

    def agent_limits(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[float, float] | None:
        return agent_time_limits(args, kwargs)

    def record_killed(self, error: str) -> None:
        _record_unrun(self.id, self.args, self.kwargs, Status.KILLED, error)


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
    **RETRYING,
    # Heartbeat outcomes are also kept as task results for `celery call` users.
    ignore_result=False,
    # Each agent's own soft and hard time limits (see HeartbeatRequest).
    Request=HeartbeatRequest,
)
def heartbeat(self: Task, agent: str, reason: str = "scheduled", debug: bool = False) -> dict[str, Any]:
    """Run one heartbeat of ``agent`` and return its compact record."""
    runtime = get_runtime()
    spec = runtime.registry.require(agent)
    heartbeat_id = self.request.id or uuid.uuid4().hex
    # The soft time limit is handled inside (recorded as "timeout"); at the hard one Celery
    # kills the process, and the claims and the agent lock expire within one lease.
    with wake.tracked(runtime, agent, heartbeat_id, reason, spec.time_limit):
        record = run_heartbeat(runtime, agent, reason, debug, heartbeat_id=heartbeat_id)
    wake.after_heartbeat(runtime, record)
    return {
        "agent": record.agent,
        "status": record.status,
        "actions": record.actions,
        "duration_s": record.duration_s,
        "error": record.error,
    }


@task_revoked.connect
def _record_expired(sender: Any = None, request: Any = None, expired: bool = False, **_: Any) -> None:
    """A heartbeat dropped unrun because it expired is on the record, not silently gone."""
    if not expired or getattr(sender, "name", None) != HEARTBEAT_TASK or request is None:
        return
    why = "expired before a worker ran it (a backlog, or redelivered after its worker died)"
    _record_unrun(request.id, request.args, request.kwargs, Status.EXPIRED, why)


def _record_unrun(task_id: str, args: Any, kwargs: Any, status: Status, error: str) -> None:
    try:
        agent, reason, _debug = parse_arguments(tuple(args or ()), dict(kwargs or {}))
        record_unrun(database(get_settings()), task_id, agent, reason, status, error)
    except FleetError:
        pass  # bad arguments or the store down: Celery's own log line still says what happened


def signature() -> inspect.Signature:
    """The task's public signature: the function's parameters without the bound task itself."""
    parameters = inspect.signature(heartbeat.__wrapped__).parameters.values()
    return inspect.Signature([p for p in parameters if p.name != "self"])
