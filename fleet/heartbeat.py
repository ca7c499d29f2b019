"""A heartbeat: one agent's scheduled (or ad-hoc) run over the shared state.

Steps: take the agent's lock; read the shared protocols (refuse to run on
invalid ones); for a polling agent, find bets waiting at its stages, claim a
batch, run the handler on each and commit each verdict through the enforcer;
for any other agent, run its handler once; write one heartbeat record and one
compact log line. An exception on one bet never aborts the others; only an
unreachable store or broker fails the heartbeat (and Celery retries it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fleet import fanout, handoff, logs, wake
from fleet.agents import AgentSpec, Registry, get_registry, resolve_handler, spec_fingerprint
from fleet.board import Board, Task
from fleet.constants import HEARTBEATS
from fleet.context import BetContext, Decision, HeartbeatContext
from fleet.errors import (
    CorruptBet,
    ExternalCallFailed,
    FleetError,
    LedgerUnavailable,
    ProtocolError,
    StaleBet,
    TaskClosed,
    TransientError,
    TransitionRefused,
)
from fleet.ledger import Bet, Enforcer
from fleet.ledger.claims import Claims, record_failure
from fleet.ledger.holds import Hold, Holds
from fleet.locks import agent_lock
from fleet.pipeline import Kind
from fleet.protocols import LoadedProtocols, load_protocols
from fleet.settings import Settings, get_settings
from fleet.store import Document, clock, database, ensure_indexes, redis_client, translated

#: Threads per process for ``ctx.gather`` (independent lookups inside one heartbeat).
LOOKUP_THREADS = 8
#: Bets of one heartbeat handled at once: they are independent, and most of a bet's time is I/O.
BET_THREADS = 4
#: Share of the agent's time limit after which no new bet is started.
SOFT_DEADLINE_SHARE = 0.8
#: A polling heartbeat reads this many candidates per claimable slot (some are claimed by others).
CANDIDATE_FACTOR = 3

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
    """Run one heartbeat of ``agent``; always returns its record (also stored and logged)."""
    spec = runtime.registry.require(agent)
    record = HeartbeatRecord(
        heartbeat_id=heartbeat_id or uuid.uuid4().hex,
        agent=agent,
        reason=reason,
        started_at=clock(runtime.db).now(),
        spec_protocol_version=spec.protocol_version,
    )
    debug = debug or runtime.settings.debug
    with agent_lock(runtime.redis, agent, spec.time_limit) as acquired:
        if not acquired:
            record.status, record.error = "skipped", "another heartbeat of this agent is running"
        else:
            _run_locked(runtime, spec, record, debug)
    _finish(runtime, record)
    return record


def _run_locked(runtime: Runtime, spec: AgentSpec, record: HeartbeatRecord, debug: bool) -> None:
    try:
        loaded = load_protocols(runtime.settings.protocols_dir)
    except ProtocolError as exc:
        record.status, record.error = "refused", str(exc)
        _file_protocol_task(runtime, spec, exc)
        return
    record.protocol_version, record.protocol_hash = loaded.version, loaded.hash
    ctx = HeartbeatContext(
        spec=spec,
        heartbeat_id=record.heartbeat_id,
        protocols=loaded,
        registry=runtime.registry,
        enforcer=runtime.enforcer,
        board=runtime.board,
        db=runtime.db,
        pool=runtime.pool,
        debug=debug,
        tasks=_close_protocol_task(runtime, spec, runtime.board.open_for(spec.name)),
    )
    ctx.log("start", protocol=loaded.version, hash=loaded.hash, open_tasks=len(ctx.tasks))
    try:
        handler = resolve_handler(spec)
        if spec.per_bet:
            _run_per_bet(runtime, ctx, handler, record)
        else:
            handler(ctx)
    except TransientError:
        raise  # the store or broker is down: Celery retries the whole (idempotent) heartbeat
    except FleetError as exc:
        record.status, record.error = "failed", str(exc)
    except Exception as exc:  # a handler bug must not kill the worker loop
        record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        record.actions = {**record.actions, **ctx.actions}
        if ctx.retries:
            record.actions["retries"] = ctx.retries
        record.trace = ctx.trace


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
    try:
        with _renewing(claims, ttl):
            batch = list(_claim_batch(ctx, claims, candidates, record))
            picked = handoff.picked_up(batch, ctx.now)  # pickup time: the batch was just claimed
            futures = [
                runtime.bet_pool.submit(_process_in_time, runtime, ctx, handler, bet, deadline)
                for bet in batch
            ]
            wait(futures)  # every bet finishes (or fails) before the claims are released
            for future in futures:
                outcome = future.result()  # re-raises an infrastructure error: Celery retries
                record.bets.append({**outcome, **picked.get(outcome["bet_id"], {})})
                ctx.count(outcome["outcome"])
    finally:
        # Only once the renewer has stopped: on FerretDB a renewal racing a release writes the
        # whole claim back and can undo ``released_at``, leaving a phantom live lease.
        claims.release_all()


def _process_in_time(
    runtime: Runtime, ctx: HeartbeatContext, handler: Callable[..., Any], bet: Bet, deadline: float
) -> dict[str, Any]:
    if time.monotonic() > deadline:
        ctx.log("deadline", bet=bet.bet_id)
        return {"bet_id": bet.bet_id, "seq": bet.seq, "outcome": "skipped", "error": "time limit near"}
    return _process_bet(runtime, ctx, handler, bet)


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


def _process_bet(
    runtime: Runtime, ctx: HeartbeatContext, handler: Callable[..., Any], claimed: Bet
) -> dict[str, Any]:
    """Run the handler on one bet and commit its decision; never raises but for infra errors."""
    outcome: dict[str, Any] = {"bet_id": claimed.bet_id, "seq": claimed.seq}
    try:
        bet = runtime.enforcer.get(claimed.bet_id)  # fresh and repaired, not the listing's copy
        if bet.seq != claimed.seq or bet.stage not in ctx.spec.polls:
            return {**outcome, "outcome": "skipped", "error": "moved by someone else"}
        decision = handler(BetContext(ctx, bet))
        return {**outcome, **_commit(runtime, ctx, bet, decision)}
    except TransientError as exc:
        if isinstance(exc, ExternalCallFailed):
            return {**outcome, **_failed(runtime, ctx, claimed, str(exc))}
        raise
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


@contextmanager
def _renewing(claims: Claims, ttl: timedelta) -> Iterator[None]:
    """Renew the heartbeat's leases every third of their TTL while the block runs."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(ttl.total_seconds() / 3):
            with suppress(LedgerUnavailable):  # a missed renewal risks duplicate work, not a wrong stage
                claims.renew()

    thread = threading.Thread(target=loop, name="fleet-claim-renewer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _finish(runtime: Runtime, record: HeartbeatRecord) -> None:
    record.finished_at = clock(runtime.db).now()
    logs.emit(record.line(), record.trace)
    write_record(runtime.db, record.to_doc())


def write_record(db: Database[Document], doc: Document) -> None:
    """Store one heartbeat record (keyed by the heartbeat id)."""
    with translated("heartbeat record"):
        try:
            db[HEARTBEATS].insert_one(doc)  # an insert: its cost does not grow with history
        except DuplicateKeyError:
            # The same heartbeat ran before (a retry or a redelivery): its last run's record wins.
            db[HEARTBEATS].replace_one({"_id": doc["_id"]}, doc)


__all__ = ["HeartbeatRecord", "LoadedProtocols", "Runtime", "get_runtime", "run_heartbeat"]
