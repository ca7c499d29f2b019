"""Fan-out within an agent: a polling heartbeat hands each claimed bet to its own Celery task.

Rule (documented in the spec field): an agent with ``fan_out: N > 0`` whose heartbeat
finds more candidates than one process runs at once on its bet threads
(:data:`fleet.heartbeat.BET_THREADS`) claims up to ``min(batch_size, N - running)`` bets
and sends one ``fleet.bet`` task per bet on the agent's queue, so any worker serving
that queue processes it; smaller batches stay in-process, where they already run in
parallel. The polling heartbeat returns once it has dispatched, so the agent lock still
allows one polling heartbeat at a time while the bets run anywhere.

- **In flight**: a Redis sorted set per agent holds each dispatched (bet, seq), scored with
  an expiry: one claim TTL while queued, renewed by the running task. A heartbeat skips
  the bets in it, and its size is the agent's fleet-wide concurrency (``fan_out``).
- **Claims**: the bet task takes the store lease when it starts, renews it (and its
  in-flight mark) while it works and releases it after. A task whose worker died stops
  renewing: both lapse and the next heartbeat dispatches the bet again; a stale duplicate
  task finds the lease taken and skips. The enforcer's sequence check keeps stages right.
- **Records**: each bet task writes a part record (``reason="bet"``, ``parent`` = the
  heartbeat id); :func:`summary` sums a heartbeat's parts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import redis
from pymongo.database import Database

from fleet import handoff, logs
from fleet.agents import resolve_handler
from fleet.constants import BET_PART_REASON, BET_TASK, FANOUT_RUNNING_KEY, HEARTBEATS
from fleet.context import HeartbeatContext
from fleet.errors import CorruptBet, LedgerUnavailable, ProtocolError
from fleet.ledger import Bet
from fleet.ledger.claims import Claims
from fleet.protocols import load_protocols
from fleet.renewer import renewing
from fleet.store import Document, clock, reading

if TYPE_CHECKING:
    from fleet.agents import AgentSpec
    from fleet.heartbeat import HeartbeatRecord, Runtime


def wanted(spec: AgentSpec, candidates: int) -> bool:
    """Fan out when the spec allows it and the batch is more than one process runs at once."""
    from fleet.heartbeat import BET_THREADS

    return spec.fan_out > 0 and candidates > BET_THREADS


def _now_s(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def member(bet_id: str, seq: int) -> str:
    """The agent's in-flight set member for one bet at one seq."""
    return f"{bet_id}:{seq}"


def free_slots(client: redis.Redis, spec: AgentSpec) -> int:
    """How many more bets of ``spec`` may be dispatched now (its fleet-wide limit minus in flight)."""
    key = FANOUT_RUNNING_KEY.format(agent=spec.name)
    client.zremrangebyscore(key, "-inf", _now_s(client))
    return max(spec.fan_out - int(client.zcard(key)), 0)


def dispatch(
    runtime: Runtime, ctx: HeartbeatContext, candidates: list[Bet | CorruptBet], record: HeartbeatRecord
) -> None:
    """Send one bet task per candidate not in flight yet, within the agent's limit.

    The dispatch itself writes only to Redis (one sorted-set member per bet, then the
    message), so one heartbeat hands out hundreds of bets a second; the bet task takes
    the store lease when it starts. A bet counts as in flight for one claim TTL while
    queued, then while its task renews it: a dead task's bet is dispatched again after that.
    """
    spec, client = ctx.spec, runtime.redis
    ttl_s = float(ctx.protocols.protocols.escalation.claim_ttl_s)
    bets: list[Bet] = []
    for bet in candidates:
        if isinstance(bet, CorruptBet):
            ctx.count("corrupt")
            record.bets.append({"bet_id": bet.bet_id, "outcome": "corrupt", "error": bet.problem})
        else:
            bets.append(bet)
    room = min(spec.batch_size, free_slots(client, spec))
    key = FANOUT_RUNNING_KEY.format(agent=spec.name)
    in_flight = client.zmscore(key, [member(b.bet_id, b.seq) for b in bets]) if bets else []
    chosen = [bet for bet, score in zip(bets, in_flight, strict=True) if score is None][:room]
    if not chosen:
        return
    client.zadd(key, {member(b.bet_id, b.seq): _now_s(client) + ttl_s for b in chosen})
    picked = handoff.picked_up(chosen, ctx.now)
    for bet in chosen:
        task_id = uuid.uuid4().hex
        _send(spec, bet, task_id, record.heartbeat_id)
        entry = {"bet_id": bet.bet_id, "seq": bet.seq, "outcome": "dispatched", "task_id": task_id}
        record.bets.append({**entry, **picked[bet.bet_id]})
    ctx.count("dispatched", len(chosen))


def _send(spec: AgentSpec, bet: Bet, task_id: str, parent: str) -> None:
    from fleet.celery_app import get_app

    # The listed view travels with the task, as an in-process batch hands it to its bet threads.
    get_app().send_task(
        BET_TASK,
        args=(spec.name, bet.bet_id, bet.seq, parent, bet.model_dump(mode="json")),
        task_id=task_id,
        queue=spec.queue,
    )


def run_bet(runtime: Runtime, agent: str, view: Bet, parent: str, task_id: str) -> HeartbeatRecord:
    """Process one dispatched bet (``view``: as its heartbeat listed it) under its own lease;
    write and return its part record."""
    from fleet.heartbeat import HeartbeatRecord, write_record

    spec = runtime.registry.require(agent)
    record = HeartbeatRecord(
        heartbeat_id=task_id,
        agent=agent,
        reason=BET_PART_REASON,
        started_at=clock(runtime.db).now(),
        spec_protocol_version=spec.protocol_version,
    )
    try:
        try:
            ctx = _context(runtime, spec, record)
        except ProtocolError as exc:
            record.status, record.error = "refused", str(exc)
        else:
            _run_claimed(runtime, ctx, view, record)
    finally:
        runtime.redis.zrem(FANOUT_RUNNING_KEY.format(agent=agent), member(view.bet_id, view.seq))
    record.finished_at = clock(runtime.db).now()
    logs.emit(record.line(), record.trace)
    write_record(runtime.db, {**record.to_doc(), "parent": parent})
    return record


def _run_claimed(runtime: Runtime, ctx: HeartbeatContext, view: Bet, record: HeartbeatRecord) -> None:
    from fleet.heartbeat import process_bet

    ttl = timedelta(seconds=ctx.protocols.protocols.escalation.claim_ttl_s)
    claims = Claims(runtime.db, ctx.agent, record.heartbeat_id, ttl)
    outcome: dict[str, Any] = {"bet_id": view.bet_id, "seq": view.seq}
    try:
        if not claims.try_claim(view.bet_id, view.seq):  # our mark lapsed while queued, someone took it
            outcome.update(outcome="skipped", error="claimed elsewhere")
        else:
            with _renewing(runtime, claims, ttl, member(view.bet_id, view.seq)):
                # As in-process: the listed view is the claimed one; it reads the bet afresh
                # and skips it if it moved meanwhile.
                outcome = process_bet(runtime, ctx, resolve_handler(ctx.spec), view)
    finally:
        # Only once the renewer has stopped (see fleet.heartbeat._run_per_bet).
        claims.release_all()
        record.bets.append(outcome)
        ctx.count(str(outcome.get("outcome", "failed")))
        record.actions = dict(ctx.actions)
        record.trace = ctx.trace


@contextmanager
def _renewing(runtime: Runtime, claims: Claims, ttl: timedelta, in_flight: str) -> Iterator[None]:
    """Renew the bet's lease and its in-flight mark every third of the TTL while the block runs."""
    key = FANOUT_RUNNING_KEY.format(agent=claims.agent)

    def mark() -> None:
        # xx: only refresh a mark that exists (a finished bet's mark is never re-created).
        with suppress(redis.RedisError):
            runtime.redis.zadd(key, {in_flight: _now_s(runtime.redis) + ttl.total_seconds()}, xx=True)

    def renew() -> None:
        mark()
        with suppress(LedgerUnavailable):  # a missed renewal risks duplicate work, not a wrong stage
            claims.renew()

    mark()  # the mark set at dispatch covered the queue wait; the lease was just taken
    with renewing(ttl.total_seconds() / 3, renew, f"fanned-out bet {in_flight}"):
        yield


def _context(runtime: Runtime, spec: AgentSpec, record: HeartbeatRecord) -> HeartbeatContext:
    """The context a bet task's handler gets: the same as its heartbeat's, under the task's id."""
    from fleet.heartbeat import heartbeat_context

    loaded = load_protocols(runtime.settings.protocols_dir)
    record.protocol_version, record.protocol_hash = loaded.version, loaded.hash
    return heartbeat_context(runtime, spec, record.heartbeat_id, loaded, runtime.settings.debug)


def summary(db: Database[Document], heartbeat_id: str) -> dict[str, int]:
    """A fanned-out heartbeat's outcome: its own actions plus the sum of its parts' actions."""
    with reading("fan-out parts"):
        parent = db[HEARTBEATS].find_one({"_id": heartbeat_id}, {"actions": 1}) or {}
        parts = list(db[HEARTBEATS].find({"parent": heartbeat_id}, {"actions": 1}))
    total: Counter[str] = Counter()
    for part in parts:
        actions = part.get("actions")
        if isinstance(actions, dict):
            total.update({k: int(v) for k, v in actions.items() if isinstance(v, int)})
    own = parent.get("actions")
    mine = {k: int(v) for k, v in own.items() if isinstance(v, int)} if isinstance(own, dict) else {}
    return {**mine, **{f"parts_{k}": v for k, v in total.items()}, "parts": len(parts)}
