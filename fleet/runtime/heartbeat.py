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

import uuid
from collections.abc import Callable
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded

from fleet.agents.context import StopSignal
from fleet.constants import BET_PART_REASON, HEARTBEAT_PARTS
from fleet.ledger import Bet
from fleet.runtime import fanout
from fleet.runtime.locks import agent_lock
from fleet.runtime.records import HeartbeatRecord, Status, finish, stored_record
from fleet.runtime.run import Run
from fleet.runtime.runtime import Runtime
from fleet.runtime.steps import BET_STEPS, HEARTBEAT_STEPS, run_steps
from fleet.store import clock

#: Why a run stopped, when the stop signal says so.
LOCK_LOST_REASON = "lock_lost"


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
    on_lost = partial(run.stop.set, LOCK_LOST_REASON)
    lock_ttl = runtime.settings.lock_ttl_s
    with agent_lock(runtime.redis, agent, lock_ttl, token=record.heartbeat_id, on_lost=on_lost) as lock:
        # The agent's open tasks, read once the lock is held (so a task the previous run
        # closed is seen closed), while the done-record read finishes.
        if lock:
            run.open_tasks = runtime.io_pool.submit(runtime.board.open_for, agent)
        if earlier is not None and (done := earlier.result()) is not None:
            return done  # a retry or redelivery of a heartbeat that finished: its work is done
        if not lock:
            holder = f" ({lock.holder})" if lock.holder else ""
            record.stop(Status.SKIPPED, f"another heartbeat of this agent is running{holder}")
        else:
            _run_stoppable(record, run.stop, partial(run_steps, run, HEARTBEAT_STEPS))
        # The record is stored while the lock is let go: two round trips at once.
        finishing = runtime.io_pool.submit(finish, runtime.db, record, lock.acquired)
    finishing.result()
    return record


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
