"""A heartbeat: one agent's scheduled (or ad-hoc) run over the shared state.

Steps: take the agent's lock; read the shared protocols (refuse to run on
invalid ones); for a polling agent, find bets waiting at its stages, claim a
batch, run the handler on each and commit each verdict through the enforcer;
for any other agent, run its handler once; write one heartbeat record and one
compact log line. An exception on one bet never aborts the others; only an
unreachable store or broker fails the heartbeat (and Celery retries it).

Safe to run twice under the same id (Celery's task id: a retry or a redelivery): a
heartbeat whose record exists is not run again; otherwise it re-takes its own leases,
re-creates bets under the same derived ids (found, not duplicated) and the enforcer's
sequence check refuses any move already made. It stops early, and says so on its
record, when Celery's soft time limit strikes (``timeout``) or its agent lock is lost
(``lock_lost``): no new bet or call starts, running bets finish or are abandoned, and
claims and the lock are released only once every bet thread has stopped.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from fleet import external, fanout, handoff, instructions, logs, usage, wake
from fleet.agents import AgentSpec, Registry, get_registry, resolve_handler, spec_fingerprint
from fleet.board import Board, Task
from fleet.constants import HEARTBEATS
from fleet.context import BetContext, Decision, HeartbeatContext, StopSignal
from fleet.errors import (
    CorruptBet,
    ExternalCallFailed,
    FleetError,
    HeartbeatStopped,
    LedgerUnavailable,
    ProtocolError,
    ServiceUnavailable,
    StaleBet,
    TaskClosed,
    TransitionRefused,
    first_line,
)
from fleet.ledger import Bet, Enforcer
from fleet.ledger.claims import Claims, record_failure
from fleet.ledger.holds import Hold, Holds
from fleet.locks import agent_lock
from fleet.pipeline import Kind
from fleet.protocols import LoadedProtocols, load_protocols
from fleet.renewer import renewing
from fleet.settings import Settings, get_settings
from fleet.store import Document, clock, database, ensure_indexes, redis_client, translated

#: Threads per process for ``ctx.gather`` (independent lookups inside one heartbeat).
LOOKUP_THREADS = 8
#: Bets of one heartbeat handled at once: they are independent, and most of a bet's time is I/O.
BET_THREADS = 4
#: Threads per process for a heartbeat's own store reads and writes that overlap each other
#: (apart from the lookup pool, so a handler's slow lookups never delay a heartbeat's record).
IO_THREADS = 8
#: Share of the agent's time limit after which no new bet is started.
SOFT_DEADLINE_SHARE = 0.8
#: A polling heartbeat reads this many candidates per claimable slot (some are claimed by others).
CANDIDATE_FACTOR = 3

#: Seconds the final record write keeps retrying a store that is down, before the record
#: is given up (it is still in the log line): re-running the work for it would be worse.
RECORD_WRITE_WINDOW_S = 20.0
#: Record statuses of a heartbeat that stopped early.
TIMEOUT = "timeout"
LOCK_LOST = "lock_lost"

#: Outcome (and counter) of a move by edge kind; kill and park moves are named by the stage they
#: reach instead, so counters speak the pipeline's words (``rejected=2``, ``on_hold=1``).
OUTCOME_BY_KIND = {Kind.ADVANCE: "advanced", Kind.REVIVE: "revived"}


@dataclass
class Runtime:
    """Per-process connections and definitions, built after Celery forks its children."""

    settings: Settings
    registry: Registry
    db: Database[dict[str, Any]]
    redis: redis.Redis
    enforcer: Enforcer
    board: Board
    pool: ThreadPoolExecutor
    bet_pool: ThreadPoolExecutor
    io_pool: ThreadPoolExecutor

    @classmethod
    def build(cls, settings: Settings | None = None, registry: Registry | None = None) -> Runtime:
        settings = settings or get_settings()
        registry = registry or get_registry()
        db = database(settings)
        ensure_indexes(db, settings)  # before this process takes its first task (idempotent)
        return cls(
            settings=settings,
            registry=registry,
            db=db,
            redis=redis_client(settings.broker_url),
            enforcer=Enforcer(db, registry.pipeline),
            board=Board(db),
            pool=ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="fleet-lookup"),
            bet_pool=ThreadPoolExecutor(BET_THREADS, thread_name_prefix="fleet-bet"),
            io_pool=ThreadPoolExecutor(IO_THREADS, thread_name_prefix="fleet-io"),
        )


_RUNTIMES: dict[int, Runtime] = {}


def get_runtime() -> Runtime:
    """This process's runtime (one per pid: connections are not fork-safe)."""
    runtime = _RUNTIMES.get(os.getpid())
    if runtime is None:
        runtime = _RUNTIMES[os.getpid()] = Runtime.build()
    return runtime


@dataclass
class HeartbeatRecord:
    """What one heartbeat did; stored in the heartbeats collection and logged as one line."""

    heartbeat_id: str
    agent: str
    reason: str
    started_at: datetime
    spec_protocol_version: str
    status: str = "ok"
    protocol_version: str | None = None
    protocol_hash: str | None = None
    instructions_hash: str | None = None
    actions: dict[str, int] = field(default_factory=dict)
    bets: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    trace: list[str] = field(default_factory=list)
    finished_at: datetime | None = None
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @property
    def duration_s(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return round((end - self.started_at).total_seconds(), 3)

    def to_doc(self) -> dict[str, Any]:
        doc = {k: v for k, v in self.__dict__.items() if k != "heartbeat_id"}
        return {"_id": self.heartbeat_id, **doc, "duration_s": self.duration_s}

    def line(self) -> str:
        text = logs.compact_line(
            self.started_at, self.agent, self.reason, self.status, self.actions, self.duration_s
        )
        return f"{text} error={self.error}" if self.error else text


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
    debug = debug or runtime.settings.debug
    stop = StopSignal()
    lock_ttl = runtime.settings.lock_ttl_s
    on_lost = partial(stop.set, LOCK_LOST)
    with agent_lock(runtime.redis, agent, lock_ttl, token=record.heartbeat_id, on_lost=on_lost) as lock:
        # The agent's open tasks, read once the lock is held (so a task the previous run
        # closed is seen closed), while the done-record read finishes.
        tasks = runtime.io_pool.submit(runtime.board.open_for, agent) if lock else None
        if earlier is not None and (done := earlier.result()) is not None:
            return done  # a retry or redelivery of a heartbeat that finished: its work is done
        if tasks is None:
            holder = f" ({lock.holder})" if lock.holder else ""
            record.status, record.error = "skipped", f"another heartbeat of this agent is running{holder}"
        else:
            _run_stoppable(record, stop, partial(_run_locked, runtime, spec, record, debug, stop, tasks))
        # The record is stored while the lock is let go: two round trips at once.
        finishing = runtime.io_pool.submit(_finish, runtime, record, lock.acquired)
    finishing.result()
    return record


def _run_stoppable(record: HeartbeatRecord, stop: StopSignal, run: Callable[[], None]) -> None:
    """Run the heartbeat's work; on Celery's soft time limit or a lost lock, record why it stopped."""
    try:
        run()
    except SoftTimeLimitExceeded:
        record.status = TIMEOUT
        record.error = "soft time limit reached: stopped, unfinished bets left to the next heartbeat"
        return
    if stop.reason == LOCK_LOST:
        record.status, record.error = LOCK_LOST, "agent lock lost mid-heartbeat: stopped starting work"


def _run_locked(
    runtime: Runtime,
    spec: AgentSpec,
    record: HeartbeatRecord,
    debug: bool,
    stop: StopSignal,
    tasks: Future[list[Task]],
) -> None:
    try:
        loaded = load_protocols(runtime.settings.protocols_dir)
    except ProtocolError as exc:
        record.status, record.error = "refused", str(exc)
        _file_protocol_task(runtime, spec, exc)
        return
    record.protocol_version, record.protocol_hash = loaded.version, loaded.hash
    record.instructions_hash = instructions.stamp(runtime.settings, spec)
    if over := usage.over_budget(runtime.db, loaded, spec.name):
        record.status, record.error = "skipped", over
        with suppress(FleetError):  # best effort: the skip itself is on the record
            usage.file_budget_task(runtime.board, spec.name, spec.owner, over, record.started_at)
        return
    open_tasks = _close_protocol_task(runtime, spec, tasks.result())
    ctx = heartbeat_context(runtime, spec, record.heartbeat_id, loaded, debug, tasks=open_tasks, stop=stop)
    ctx.log("start", protocol=loaded.version, hash=loaded.hash, open_tasks=len(ctx.tasks))
    try:
        handler = resolve_handler(spec)
        external.preflight(handler, ctx)  # an external agent is never run without its tools
        if spec.per_bet:
            _run_per_bet(runtime, ctx, handler, record)
        else:
            handler(ctx)
    except (ServiceUnavailable, SoftTimeLimitExceeded):
        raise  # the store or broker is down (Celery retries the idempotent heartbeat), or time is up
    except HeartbeatStopped:
        pass  # the lock was lost: the caller records it
    except FleetError as exc:  # ExternalCallFailed included: a failed call is not a failed task
        record.status, record.error = "failed", str(exc)
    except Exception as exc:  # a handler bug must not kill the worker loop
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
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


def _run_per_bet(
    runtime: Runtime, ctx: HeartbeatContext, handler: Callable[..., Any], record: HeartbeatRecord
) -> None:
    spec = ctx.spec
    ttl = timedelta(seconds=ctx.protocols.protocols.escalation.claim_ttl_s)
    claims = Claims(runtime.db, spec.name, record.heartbeat_id, ttl)
    deadline = time.monotonic() + spec.time_limit * SOFT_DEADLINE_SHARE
    held = _held_here(runtime, ctx)
    limit = spec.batch_size * CANDIDATE_FACTOR + len(held)  # held bets never crowd the others out
    candidates = [
        bet
        for bet in runtime.enforcer.bets_at(list(spec.polls), limit)
        if isinstance(bet, CorruptBet) or (bet.bet_id, bet.seq) not in held
    ]
    if held:
        ctx.count("held", len(held))
    if fanout.wanted(spec, len(candidates)):  # each bet its own task, on any worker of the queue
        return fanout.dispatch(runtime, ctx, candidates, record)
    futures: list[Future[dict[str, Any]]] = []
    pickups: dict[str, dict[str, Any]] = {}
    try:
        with _renewing(claims, ttl):
            try:
                for bet in _claim_batch(ctx, claims, candidates, record):
                    pickups.update(handoff.picked_up([bet], ctx.now))  # pickup time: its claim
                    task = partial(_process_in_time, runtime, ctx, handler, bet, deadline)
                    futures.append(runtime.bet_pool.submit(task))
                wait(futures)
            except BaseException:  # the soft time limit lands in this (main) thread
                ctx.stop.set("interrupted")
                wait(futures)  # bet threads stop at their next call: none outlives its claim
                raise
            finally:
                try:
                    _collect(futures, ctx, record)
                finally:
                    handoff.annotate(record.bets, pickups)
    finally:
        # Only once the renewer and every bet thread have stopped: on FerretDB a renewal racing
        # a release writes the whole claim back and can undo ``released_at`` (a phantom lease).
        _release_claims(claims, ctx)


def _collect(futures: list[Future[dict[str, Any]]], ctx: HeartbeatContext, record: HeartbeatRecord) -> None:
    """Put every finished bet's outcome on the record; then re-raise an infrastructure error."""
    unavailable: BaseException | None = None
    for future in futures:
        if not future.done():
            continue
        if (exc := future.exception()) is not None:
            unavailable = unavailable or exc
            continue
        outcome = future.result()
        record.bets.append(outcome)
        ctx.count(outcome["outcome"])
    if unavailable is not None:
        raise unavailable  # the store or broker is down: Celery retries the heartbeat


def _release_claims(claims: Claims, ctx: HeartbeatContext) -> None:
    """Release every lease; with the store down they expire on their own, and the error that
    brought us here (not this one) is what the heartbeat reports."""
    try:
        claims.release_all()
    except LedgerUnavailable:
        ctx.log("claims-unreleased", held=len(claims.held))


def _process_in_time(
    runtime: Runtime, ctx: HeartbeatContext, handler: Callable[..., Any], bet: Bet, deadline: float
) -> dict[str, Any]:
    if ctx.stop.is_set() or time.monotonic() > deadline:
        ctx.log("deadline", bet=bet.bet_id, stopping=ctx.stop.reason)
        why = f"stopping: {ctx.stop.reason}" if ctx.stop.is_set() else "time limit near"
        return {"bet_id": bet.bet_id, "seq": bet.seq, "outcome": "skipped", "error": why}
    return process_bet(runtime, ctx, handler, bet)


def _claim_batch(
    ctx: HeartbeatContext,
    claims: Claims,
    candidates: list[Bet | CorruptBet],
    record: HeartbeatRecord,
) -> Iterator[Bet]:
    """Yield up to ``batch_size`` bets this heartbeat managed to claim; flag corrupt ones."""
    taken = 0
    for bet in candidates:
        if isinstance(bet, CorruptBet):
            ctx.count("corrupt")
            record.bets.append({"bet_id": bet.bet_id, "outcome": "corrupt", "error": bet.problem})
            ctx.log("corrupt", bet=bet.bet_id, problem=bet.problem)
            continue
        if taken >= ctx.spec.batch_size:
            return
        if claims.try_claim(bet.bet_id, bet.seq):
            taken += 1
            ctx.count("claimed")
            yield bet
        else:
            ctx.log("claimed-elsewhere", bet=bet.bet_id)


def process_bet(
    runtime: Runtime, ctx: HeartbeatContext, handler: Callable[..., Any], claimed: Bet
) -> dict[str, Any]:
    """Run the handler on one bet and commit its decision; never raises but for infra errors."""
    outcome: dict[str, Any] = {"bet_id": claimed.bet_id, "seq": claimed.seq}
    try:
        bet = runtime.enforcer.get(claimed.bet_id)  # fresh and repaired, not the listing's copy
        if bet.seq != claimed.seq or bet.stage not in ctx.spec.polls:
            return {**outcome, "outcome": "skipped", "error": "moved by someone else"}
        decision = handler(BetContext(ctx, bet))
        return {**outcome, **_commit(runtime, ctx, bet, decision), **external.report_of(decision)}
    except ServiceUnavailable:
        raise
    except ExternalCallFailed as exc:
        return {**outcome, **_failed(runtime, ctx, claimed, str(exc))}
    except HeartbeatStopped as exc:  # not the bet's fault: no failure is counted on it
        ctx.log("abandoned", bet=claimed.bet_id, reason=exc.reason)
        return {**outcome, "outcome": "abandoned", "error": str(exc)}
    except TransitionRefused as exc:
        ctx.log("refused", bet=claimed.bet_id, reason=exc.reason)
        if isinstance(exc, StaleBet):  # lost a race: the bet moved, nothing to learn
            return {**outcome, "outcome": "refused", "error": str(exc)}
        runtime.enforcer.ledger.touch(claimed)  # to the back of the queue, like a bet that stays
        return {
            **outcome,
            "outcome": "refused",
            "error": str(exc),
            **_hold_if_looping(runtime, ctx, claimed, exc),
        }
    except Exception as exc:  # one bet's bug never aborts the others
        return {**outcome, **_failed(runtime, ctx, claimed, f"{type(exc).__name__}: {exc}")}


def _held_here(runtime: Runtime, ctx: HeartbeatContext) -> set[tuple[str, int]]:
    """(bet, seq) pairs this agent is not offered: holds taken under its current spec and protocols."""
    fingerprint = spec_fingerprint(ctx.spec)
    return {
        (hold.bet_id, hold.seq)
        for hold in Holds(runtime.db).of_agent(ctx.agent)
        if hold.applies(fingerprint, ctx.protocols.hash)
    }


def _hold_if_looping(
    runtime: Runtime, ctx: HeartbeatContext, bet: Bet, refused: TransitionRefused
) -> dict[str, Any]:
    """Hold the bet back from this agent once it was refused on it too often (a refusal loop)."""
    policy = ctx.protocols.protocols.escalation
    holds = Holds(runtime.db)
    since = ctx.now - timedelta(hours=policy.refusal_loop_window_h)
    refusals = holds.recent_refusals(ctx.agent, bet.bet_id, bet.seq, since)
    if refusals <= policy.refusal_loop_threshold:
        return {}
    hold = Hold(
        agent=ctx.agent,
        bet_id=bet.bet_id,
        seq=bet.seq,
        from_stage=refused.from_stage,
        to_stage=refused.to_stage,
        refusals=refusals,
        reason=refused.reason,
        fingerprint=spec_fingerprint(ctx.spec),
        protocol_hash=ctx.protocols.hash,
        at=ctx.now,
    )
    if holds.take(hold):
        ctx.count("held_now")
        ctx.log("held", bet=bet.bet_id, refusals=refusals, move=f"{refused.from_stage}->{refused.to_stage}")
    return {"held": True}


def _commit(runtime: Runtime, ctx: HeartbeatContext, bet: Bet, decision: Any) -> dict[str, Any]:
    if not isinstance(decision, Decision):
        raise TypeError(f"handler returned {type(decision).__name__}, expected Decision")
    if outside := external.moved_outside(decision):
        return outside  # an external agent moved the bet itself, through the MCP tools
    if decision.to_stage is None:
        runtime.enforcer.ledger.touch(bet)  # to the back of the stage's queue: newer bets get a turn
        ctx.log("deferred", bet=bet.bet_id, verdict=decision.verdict)
        return {"outcome": "deferred", "verdict": decision.verdict}
    moved = runtime.enforcer.advance(
        bet.bet_id,
        decision.to_stage,
        ctx.agent,
        bet.seq,
        verdict=decision.verdict,
        evidence=decision.evidence,
        heartbeat_id=ctx.heartbeat_id,
        stamp=ctx.protocols.stamp,
        view=bet,
    )
    wake.on_arrival(runtime, moved.stage)  # the next owner runs now, not at its next slot
    edge = runtime.registry.pipeline.edge(bet.stage, moved.stage)
    kind = move_outcome(edge.kind if edge else Kind.ADVANCE, moved.stage)
    ctx.log(kind, bet=bet.bet_id, to=moved.stage, verdict=decision.verdict)
    return {"outcome": kind, "to_stage": moved.stage, "verdict": decision.verdict}


def move_outcome(kind: Kind, to_stage: str) -> str:
    """What a heartbeat counts for a move: ``advanced``/``revived``, else the stage it reached."""
    return OUTCOME_BY_KIND.get(kind, to_stage)


def _failed(runtime: Runtime, ctx: HeartbeatContext, bet: Bet, error: str) -> dict[str, Any]:
    """Leave the bet where it is and count a failure on it: a failed call is not a failed task."""
    record_failure(runtime.db, bet.bet_id, bet.seq, ctx.agent, ctx.heartbeat_id, error)
    runtime.enforcer.ledger.touch(bet)
    ctx.log("failed", bet=bet.bet_id, error=error)
    return {"outcome": "failed", "error": error}


def _renewing(claims: Claims, ttl: timedelta) -> AbstractContextManager[None]:
    """Renew the heartbeat's leases every third of their TTL while the block runs."""

    def renew() -> None:
        with suppress(LedgerUnavailable):  # a missed renewal risks duplicate work, not a wrong stage
            claims.renew()

    return renewing(ttl.total_seconds() / 3, renew, f"claims of {claims.heartbeat_id}")


def _finish(runtime: Runtime, record: HeartbeatRecord, overwrite: bool) -> None:
    """Log the record and store it; a store that stays down loses the record, not the work."""
    record.finished_at = clock(runtime.db).now()
    logs.emit(record.line(), record.trace)
    doc = record.to_doc()
    writing = Retrying(
        stop=stop_after_delay(RECORD_WRITE_WINDOW_S),
        wait=wait_exponential(multiplier=0.5, max=5),
        retry=retry_if_exception_type(LedgerUnavailable),
        reraise=True,
    )
    try:
        writing(write_record, runtime.db, doc, overwrite)
    except LedgerUnavailable as exc:
        # Raising would make Celery run the whole heartbeat again for a record.
        logs.emit(f"{record.line()} record-not-stored={first_line(exc)}", [])


def write_record(db: Database[Document], doc: Document, overwrite: bool = True) -> None:
    """Store one heartbeat record (keyed by the heartbeat id); ``overwrite`` an earlier one?"""
    with translated("heartbeat record"):
        try:
            db[HEARTBEATS].insert_one(doc)  # an insert: its cost does not grow with history
        except DuplicateKeyError:
            # Another delivery of this heartbeat finished first: the run that did the work wins,
            # a skipped copy never overwrites it.
            if overwrite:
                db[HEARTBEATS].replace_one({"_id": doc["_id"]}, doc)


def record_unrun(
    db: Database[dict[str, Any]], heartbeat_id: str, agent: str, reason: str, status: str, error: str
) -> None:
    """Record a heartbeat Celery dropped (``expired``) or killed (``killed``); never overwrites."""
    now = clock(db).now()
    record = HeartbeatRecord(
        heartbeat_id=heartbeat_id,
        agent=agent,
        reason=reason,
        started_at=now,
        spec_protocol_version="",
        status=status,
        error=error,
        finished_at=now,
    )
    logs.emit(record.line())
    write_record(db, record.to_doc(), overwrite=False)


def stored_record(db: Database[dict[str, Any]], heartbeat_id: str) -> HeartbeatRecord | None:
    """The stored record of heartbeat ``heartbeat_id``, or None if it never finished."""
    with translated("reading a heartbeat record"):
        doc = db[HEARTBEATS].find_one({"_id": heartbeat_id})
    if doc is None:
        return None
    known = {f.name for f in fields(HeartbeatRecord)} - {"heartbeat_id"}
    return HeartbeatRecord(heartbeat_id=heartbeat_id, **{k: v for k, v in doc.items() if k in known})


__all__ = [
    "HeartbeatRecord",
    "LoadedProtocols",
    "Runtime",
    "get_runtime",
    "heartbeat_context",
    "process_bet",
    "record_unrun",
    "run_heartbeat",
    "stored_record",
]
