"""A heartbeat: one agent's scheduled (or ad-hoc) run over the shared state; and one fanned-out bet.

:func:`run_heartbeat` takes the agent's lock, then runs :data:`fleet.runtime.steps.HEARTBEAT_STEPS`
(protocols, instructions, budget, board tasks, context, handler, tools preflight, batch
runner) and writes one record and one compact log line. :func:`run_bet` runs one bet a
polling heartbeat fanned out, through :data:`fleet.runtime.steps.BET_STEPS`, and writes
its part record. An exception on one bet never aborts the others; only an unreachable
store or broker fails the task (and Celery retries it).

Safe to run twice under the same id (Celery's task id: a retry or a redelivery): a
heartbeat whose record exists is not run again; otherwise it re-takes its own leases,
re-creates bets under the same derived ids (found, not duplicated) and the enforcer's
sequence check refuses any move already made. It stops early, and says so on its
record, when Celery's soft time limit strikes (``timeout``) or its agent lock is lost
(``lock_lost``): no new bet or call starts, running bets finish or are abandoned, and
claims and the lock are released only once every bet thread has stopped.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import ExitStack, suppress
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded

from fleet import logs
from fleet.agents.context import StopSignal
from fleet.constants import BET_PART_REASON, HEARTBEAT_PARTS
from fleet.definitions.catalogue import AgentSpec
from fleet.errors import BrokerUnavailable, LedgerUnavailable, LockUnavailable, first_line
from fleet.ledger import Bet
from fleet.runtime import fanout
from fleet.runtime.locks import agent_lock
from fleet.runtime.records import HeartbeatRecord, Status, finish, stored_record, write_record
from fleet.runtime.run import Run
from fleet.runtime.runtime import Runtime
from fleet.runtime.steps import BET_STEPS, HEARTBEAT_STEPS, run_steps
from fleet.store import clock

#: Why a run stopped, when the stop signal says so.
LOCK_LOST_REASON = "lock_lost"
#: With Redis unreachable at the lock, a heartbeat retries it in-process (Celery's own retry
#: needs the broker) every 1, 2, 4 ... 10 s, for a share of its time limit, 120 s at most.
LOCK_RETRY_FIRST_S = 1.0
LOCK_RETRY_MAX_S = 10.0
LOCK_WAIT_SHARE = 0.5
LOCK_WAIT_MAX_S = 120.0


def run_heartbeat(
    runtime: Runtime,
    agent: str,
    reason: str = "scheduled",
    debug: bool = False,
    heartbeat_id: str | None = None,
) -> HeartbeatRecord:
    """Run one heartbeat of ``agent``; always returns its record (also stored and logged).

    Under a ``heartbeat_id`` that already has a record, returns that record and does nothing.
    """
    spec = runtime.registry.require(agent)
    # Whether this id already ran is read while the lock is taken (two round trips at once).
    earlier = runtime.io_pool.submit(stored_record, runtime.db, heartbeat_id) if heartbeat_id else None
    record = HeartbeatRecord(
        heartbeat_id=heartbeat_id or uuid.uuid4().hex,
        agent=agent,
        reason=reason,
        started_at=clock(runtime.db).now(),
        spec_protocol_version=spec.protocol_version,
    )
    run = Run(runtime, spec, record, debug or runtime.settings.debug)
    waited, pause = 0.0, LOCK_RETRY_FIRST_S
    while True:
        try:
            return _run_locked(run, earlier)
        except LockUnavailable as exc:
            # Redis is down: Celery's retry would go through that same dead broker and be
            # lost, so the record says why now, and the heartbeat waits here for Redis.
            if waited == 0.0:
                _record_unavailable(runtime, record, exc, _lock_wait_s(spec))
            if waited >= _lock_wait_s(spec):
                logs.emit(record.line())
                return record  # its message, never acked, is redelivered once Redis is back
            time.sleep(pause)  # waiting for Redis is this heartbeat's work now
            waited, pause = waited + pause, min(pause * 2, LOCK_RETRY_MAX_S)


def _run_locked(run: Run, earlier: Future[HeartbeatRecord | None] | None) -> HeartbeatRecord:
    """The heartbeat under its agent's lock; :class:`LockUnavailable` if Redis cannot be reached."""
    runtime, record, agent = run.runtime, run.record, run.spec.name
    on_lost = partial(run.stop.set, LOCK_LOST_REASON)
    lock_ttl = runtime.settings.lock_ttl_s
    with ExitStack() as held:
        try:
            lock = held.enter_context(
                agent_lock(runtime.redis, agent, lock_ttl, token=record.heartbeat_id, on_lost=on_lost)
            )
        except BrokerUnavailable as exc:  # only taking the lock: a lost renewal stops the run instead
            raise LockUnavailable(str(exc)) from None
        # The agent's open tasks, read once the lock is held (so a task the previous run
        # closed is seen closed), while the done-record read finishes.
        if lock:
            run.open_tasks = runtime.io_pool.submit(runtime.board.open_for, agent)
        if (done := _finished(earlier)) is not None:
            return done  # a retry or redelivery of a heartbeat that finished: its work is done
        if not lock:
            holder = f" ({lock.holder})" if lock.holder else ""
            record.stop(Status.SKIPPED, f"another heartbeat of this agent is running{holder}")
        else:
            record.stop(Status.OK, None)  # an earlier wait for Redis is over
            _run_stoppable(record, run.stop, partial(run_steps, run, HEARTBEAT_STEPS))
        # The record is stored while the lock is let go: two round trips at once.
        finishing = runtime.io_pool.submit(finish, runtime.db, record, lock.acquired)
    finishing.result()
    return record


def _finished(earlier: Future[HeartbeatRecord | None] | None) -> HeartbeatRecord | None:
    """The record of an earlier run of this id that did its work (one that waited for Redis did not)."""
    done = earlier.result() if earlier is not None else None
    return done if done is not None and done.status != Status.UNAVAILABLE else None


def _lock_wait_s(spec: AgentSpec) -> float:
    """How long a heartbeat waits for an unreachable Redis before it gives up its turn."""
    return min(LOCK_WAIT_MAX_S, spec.time_limit * LOCK_WAIT_SHARE)


def _record_unavailable(runtime: Runtime, record: HeartbeatRecord, exc: Exception, wait_s: float) -> None:
    """Store (and log) that the heartbeat could not take its lock; a later outcome overwrites it."""
    why = f"Redis unreachable, agent lock not taken ({first_line(exc)})"
    record.stop(Status.UNAVAILABLE, f"{why}; waiting up to {wait_s:g}s for it, then left to a redelivery")
    record.finished_at = clock(runtime.db).now()
    logs.emit(record.line())
    with suppress(LedgerUnavailable):  # the store down too: the log line is all there is
        write_record(runtime.db, record.to_doc(), overwrite=False)
    record.finished_at = None


def run_bet(
    runtime: Runtime,
    agent: str,
    view: Bet,
    parent: str,
    task_id: str,
    parent_instructions: str | None = None,
    debug: bool = False,
) -> HeartbeatRecord:
    """Process one dispatched bet (``view``: as its heartbeat listed it) under its own lease;
    write and return its part record (``parent_instructions``: the hash its heartbeat ran with)."""
    spec = runtime.registry.require(agent)
    record = HeartbeatRecord(
        heartbeat_id=task_id,
        agent=agent,
        reason=BET_PART_REASON,
        started_at=clock(runtime.db).now(),
        spec_protocol_version=spec.protocol_version,
        parent=parent,
    )
    run = Run(runtime, spec, record, debug or runtime.settings.debug, view=view)
    run.parent_instructions = parent_instructions
    try:
        _run_stoppable(record, run.stop, partial(run_steps, run, BET_STEPS))
    finally:
        fanout.release(runtime.redis, agent, view)
    finish(runtime.db, record)
    return record


def _run_stoppable(record: HeartbeatRecord, stop: StopSignal, work: Callable[[], None]) -> None:
    """Run the steps; on Celery's soft time limit or a lost lock, record why it stopped."""
    try:
        work()
    except SoftTimeLimitExceeded:
        record.stop(
            Status.TIMEOUT, "soft time limit reached: stopped, unfinished bets left to the next heartbeat"
        )
        return
    if stop.reason == LOCK_LOST_REASON:
        record.stop(Status.LOCK_LOST, "agent lock lost mid-heartbeat: stopped starting work")


def stored_part(runtime: Runtime, task_id: str) -> HeartbeatRecord | None:
    """The part record of bet task ``task_id``, or None if it never finished."""
    return stored_record(runtime.db, task_id, HEARTBEAT_PARTS)
