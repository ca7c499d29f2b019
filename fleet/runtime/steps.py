"""A heartbeat's steps, in order: each a small function of the run, returning a Halt to end it.

    lock (fleet.runtime.heartbeat) -> protocols -> instructions -> budget -> board tasks
      -> context -> handler -> tools preflight -> batch runner (or the handler once)
      -> record (fleet.runtime.records) -> wake (tasks/heartbeat.py)

A fanned-out bet task runs the same steps (:data:`BET_STEPS`) but for the board tasks
and the choice of runner: it checks that the instructions are still those its heartbeat
ran with, and runs its one bet through the in-process runner. Where a step fails:

- invalid protocols: ``refused`` (a board task is filed, and closed once they read fine);
- instructions changed since the heartbeat started (a part only): ``skipped``;
- over the daily budget: ``skipped`` (one board task to the spec's owner); a bet whose
  expected cost does not fit what is left is not started (``over_budget`` on its entry), and
  neither is the run of an agent that polls nothing (``skipped``);
- any fleet error in the handler or the runner, a failed external call included: ``failed``
  (a failed call is not a failed task: never retried by Celery);
- the store or broker unreachable, or the soft time limit: raised to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from celery.exceptions import SoftTimeLimitExceeded

from fleet.agents import budget, external, usage
from fleet.agents.context import HeartbeatContext, StopSignal
from fleet.agents.handlers import resolve_handler
from fleet.board import Task
from fleet.definitions.catalogue import AgentSpec
from fleet.definitions.instructions import load_usable
from fleet.definitions.protocols import LoadedProtocols, load_protocols
from fleet.errors import (
    FleetError,
    HeartbeatStopped,
    OverBudget,
    ProtocolError,
    ServiceUnavailable,
    TaskClosed,
)
from fleet.runtime import batch, bets, fanout
from fleet.runtime.records import Status
from fleet.runtime.run import Halt, Run, Step
from fleet.runtime.runtime import Runtime


def read_protocols(run: Run) -> Halt | None:
    """The shared protocols, read (and validated) at every start; invalid ones refuse the run."""
    try:
        run.loaded = load_protocols(run.runtime.settings.protocols_dir)
    except ProtocolError as exc:
        _file_protocol_task(run.runtime, run.spec, exc)
        return Halt(Status.REFUSED, str(exc))
    run.record.protocol_version, run.record.protocol_hash = run.loaded.version, run.loaded.hash
    return None


def read_instructions(run: Run) -> Halt | None:
    """The agent's instructions, read once: every bet of the heartbeat gets this same content."""
    run.instructions = load_usable(run.runtime.settings, run.spec)
    run.record.instructions_hash = None if run.instructions is None else run.instructions.hash
    if run.is_part and run.record.instructions_hash != run.parent_instructions:
        return Halt(Status.SKIPPED, "instructions changed since its heartbeat started: left to the next one")
    return None


def check_budget(run: Run) -> Halt | None:
    """Over the agent's daily budget: nothing runs, and the spec's owner hears of it once."""
    loaded = _loaded(run)
    over = usage.over_budget(run.runtime.db, loaded, run.spec.name)
    if not over:
        return None
    with suppress(FleetError):  # best effort: the skip itself is on the record
        usage.file_budget_task(run.runtime.board, run.spec.name, run.spec.owner, over, run.record.started_at)
    return Halt(Status.SKIPPED, over)


def read_board_tasks(run: Run) -> Halt | None:
    """The agent's open tasks (read while the lock was taken), the protocols task closed if filed."""
    if run.open_tasks is not None:
        run.tasks = _close_protocol_task(run.runtime, run.spec, run.open_tasks.result())
    return None


def build_context(run: Run) -> Halt | None:
    """What the handler sees: the runtime's parts, the protocols and instructions read above."""
    loaded = _loaded(run)
    run.context = heartbeat_context(
        run.runtime, run.spec, run.record.heartbeat_id, loaded, run.debug, tasks=run.tasks, stop=run.stop
    )
    run.context.instructions = run.instructions
    run.context.log("start", protocol=loaded.version, hash=loaded.hash, open_tasks=len(run.tasks))
    return None


def resolve(run: Run) -> Halt | None:
    """The spec's handler (a bad import path fails the run)."""
    run.handler = resolve_handler(run.spec)
    return None


def preflight(run: Run) -> Halt | None:
    """An external agent is never run without its tools (a no-op for Python handlers)."""
    external.preflight(run.handler, run.ctx)
    return None


def work(run: Run) -> Halt | None:
    """A polling agent: its candidates through a batch runner; any other: its handler, once."""
    if not run.spec.per_bet:
        assert run.handler is not None  # set by the handler step
        member = run.record.heartbeat_id
        try:
            reservation = budget.reserve(run.runtime.redis, run.runtime.db, run.ctx.protocols, run.spec.name,
                                         member, run.spec.time_limit)  # fmt: skip
        except OverBudget as exc:
            return Halt(Status.SKIPPED, str(exc))
        try:
            run.handler(run.ctx)
        finally:
            bets.settle(run.runtime, run.ctx, reservation, None)
        return None
    found = bets.candidates(run.runtime, run.ctx)
    runner: batch.BatchRunner = fanout.dispatch if fanout.wanted(run.spec, len(found)) else batch.in_process
    runner(run, found)
    return None


def work_on_part(run: Run) -> Halt | None:
    """A fanned-out bet: the in-process runner with a batch of one, its in-flight mark renewed."""
    assert run.view is not None  # a part always has its view
    ttl_s = float(run.ctx.protocols.protocols.escalation.claim_ttl_s)
    batch.in_process(run, [run.view], renew_also=fanout.in_flight_renewal(run, ttl_s))
    return None


#: Before the handler's context exists: a Halt here is the whole outcome.
_GATES: tuple[Step, ...] = (read_protocols, read_instructions, check_budget)

HEARTBEAT_STEPS: tuple[Step, ...] = (*_GATES, read_board_tasks, build_context, resolve, preflight, work)
BET_STEPS: tuple[Step, ...] = (*_GATES, build_context, resolve, preflight, work_on_part)


def run_steps(run: Run, steps: Sequence[Step]) -> None:
    """Run ``steps`` in order until one halts; put the outcome and the handler's counts on the record."""
    record = run.record
    try:
        for step in steps:
            if (halt := step(run)) is not None:
                record.stop(halt.status, halt.error)
                return
    except (ServiceUnavailable, SoftTimeLimitExceeded):
        raise  # the store or broker is down (Celery retries the idempotent task), or time is up
    except HeartbeatStopped:
        pass  # the lock was lost: the caller records it
    except FleetError as exc:  # ExternalCallFailed included: a failed call is not a failed task
        record.stop(Status.FAILED, str(exc))
    except Exception as exc:  # a handler bug must not kill the worker loop
        record.stop(Status.FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        if run.context is not None:
            ctx = run.context
            record.actions = {**record.actions, **ctx.actions}
            if ctx.retries:
                record.actions["retries"] = ctx.retries
            record.trace = ctx.trace


def heartbeat_context(
    runtime: Runtime,
    spec: AgentSpec,
    heartbeat_id: str,
    loaded: LoadedProtocols,
    debug: bool,
    tasks: list[Task] | None = None,
    stop: StopSignal | None = None,
) -> HeartbeatContext:
    """What a handler sees in one heartbeat (or one fanned-out bet of it): the runtime's parts."""
    return HeartbeatContext(
        spec=spec,
        heartbeat_id=heartbeat_id,
        protocols=loaded,
        registry=runtime.registry,
        enforcer=runtime.enforcer,
        board=runtime.board,
        db=runtime.db,
        pool=runtime.pool,
        debug=debug,
        tasks=tasks if tasks is not None else [],
        stop=stop if stop is not None else StopSignal(),
    )


def _loaded(run: Run) -> LoadedProtocols:
    if run.loaded is None:
        raise RuntimeError("the protocols step has not run")  # a step order bug, never input
    return run.loaded


def _protocol_task_key(spec: AgentSpec) -> str:
    return f"protocols-invalid:{spec.name}"


def _close_protocol_task(runtime: Runtime, spec: AgentSpec, tasks: list[Task]) -> list[Task]:
    """The protocols read fine again: close the task a refused heartbeat filed; return the rest."""
    key = _protocol_task_key(spec)
    for task in tasks:
        if task.dedupe_key == key:
            with suppress(TaskClosed):  # someone (an operator) closed it since we listed it
                runtime.board.close(task.task_id, by=spec.name, reason="the protocols are valid again")
    return [task for task in tasks if task.dedupe_key != key]


def _file_protocol_task(runtime: Runtime, spec: AgentSpec, exc: ProtocolError) -> None:
    with suppress(FleetError):  # best effort: the refusal itself is on the heartbeat record
        runtime.board.file(
            assignee=spec.name,
            origin="escalation",
            dedupe_key=_protocol_task_key(spec),
            title=f"{spec.name} refuses to run: the shared protocols are invalid",
            detail={"error": str(exc)},
            by=spec.name,
        )
