"""Fan-out within an agent: a polling heartbeat hands each claimed bet to its own Celery task.

Rule (documented in the spec field): an agent with ``fan_out: N > 0`` whose heartbeat
finds more candidates than one process runs at once on its bet threads
(:data:`fleet.heartbeat.BET_THREADS`) claims up to ``min(batch_size, N - running)`` bets
and sends one ``fleet.bet`` task per bet on the agent's queue, so any worker serving
that queue processes it; smaller batches stay in-process, where they already run in
parallel. The polling heartbeat returns once it has dispatched, so the agent lock still
allows one polling heartbeat at a time while the bets run anywhere.

- **Claims** are taken by the dispatching heartbeat under each bet task's id; the task
  takes its own lease back (like a redelivered heartbeat), renews it while it works and
  releases it after. A task whose worker died stops renewing: the lease lapses and the
  next heartbeat takes the bet over. The enforcer's sequence check keeps stages right.
- **Fleet-wide concurrency per agent**: a Redis sorted set per agent counts dispatched
  bet tasks not finished yet (scored with an expiry, so a killed task stops counting).
- **Records**: each bet task writes a part record (``reason="bet"``, ``parent`` = the
  heartbeat id); :func:`summary` sums a heartbeat's parts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import redis
from pymongo.database import Database

from fleet import handoff, logs
from fleet.agents import resolve_handler
from fleet.constants import BET_TASK, FANOUT_RUNNING_KEY, HEARTBEATS
from fleet.context import HeartbeatContext
from fleet.errors import CorruptBet, ProtocolError
from fleet.ledger import Bet
from fleet.ledger.claims import Claims
from fleet.protocols import load_protocols
from fleet.store import Document, clock, reading

if TYPE_CHECKING:
    from fleet.agents import AgentSpec
    from fleet.heartbeat import HeartbeatRecord, Runtime

#: Reason recorded on a bet task's part record.
PART_REASON = "bet"


def wanted(spec: AgentSpec, candidates: int) -> bool:
    """Fan out when the spec allows it and the batch is more than one process runs at once."""
    from fleet.heartbeat import BET_THREADS

    return spec.fan_out > 0 and candidates > BET_THREADS


def _now_s(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1e6


def free_slots(client: redis.Redis, spec: AgentSpec) -> int:
    """How many more bets of ``spec`` may be dispatched now (its fleet-wide limit minus running)."""
    key = FANOUT_RUNNING_KEY.format(agent=spec.name)
    client.zremrangebyscore(key, "-inf", _now_s(client))
    return max(spec.fan_out - int(client.zcard(key)), 0)


def _expiry_s(spec: AgentSpec, ctx: HeartbeatContext) -> float:
    """How long a dispatched bet counts against the limit at most: queue wait + work."""
    return float(spec.time_limit + ctx.protocols.protocols.escalation.claim_ttl_s)


def dispatch(
    runtime: Runtime, ctx: HeartbeatContext, candidates: list[Bet | CorruptBet], record: HeartbeatRecord
) -> None:
    """Claim bets for their own tasks and send them; the record lists what was dispatched."""
    spec = ctx.spec
    ttl = timedelta(seconds=ctx.protocols.protocols.escalation.claim_ttl_s)
    room = min(spec.batch_size, free_slots(runtime.redis, spec))
    key = FANOUT_RUNNING_KEY.format(agent=spec.name)
    for bet in candidates:
        if isinstance(bet, CorruptBet):
            ctx.count("corrupt")
            record.bets.append({"bet_id": bet.bet_id, "outcome": "corrupt", "error": bet.problem})
            continue
        if room <= 0:
            break
        task_id = uuid.uuid4().hex
        if not Claims(runtime.db, spec.name, task_id, ttl).try_claim(bet.bet_id, bet.seq):
            continue
        room -= 1
        runtime.redis.zadd(key, {task_id: _now_s(runtime.redis) + _expiry_s(spec, ctx)})
        _send(spec, bet, task_id, record.heartbeat_id)
        picked = handoff.picked_up([bet], ctx.now)[bet.bet_id]
        record.bets.append(
            {"bet_id": bet.bet_id, "seq": bet.seq, "outcome": "dispatched", "task_id": task_id, **picked}
        )
        ctx.count("claimed")
        ctx.count("dispatched")


def _send(spec: AgentSpec, bet: Bet, task_id: str, parent: str) -> None:
    from fleet.celery_app import get_app

    get_app().send_task(
        BET_TASK,
        args=(spec.name, bet.bet_id, bet.seq, parent),
        task_id=task_id,
        queue=spec.queue,
    )


def run_bet(
    runtime: Runtime, agent: str, bet_id: str, seq: int, parent: str, task_id: str
) -> HeartbeatRecord:
    """Process one dispatched bet under its own lease; write and return its part record."""
    from fleet.heartbeat import HeartbeatRecord, write_record

    spec = runtime.registry.require(agent)
    record = HeartbeatRecord(
        heartbeat_id=task_id,
        agent=agent,
        reason=PART_REASON,
        started_at=clock(runtime.db).now(),
        spec_protocol_version=spec.protocol_version,
    )
    try:
        try:
            ctx = _context(runtime, spec, record)
        except ProtocolError as exc:
            record.status, record.error = "refused", str(exc)
        else:
            _run_claimed(runtime, ctx, bet_id, seq, record)
    finally:
        runtime.redis.zrem(FANOUT_RUNNING_KEY.format(agent=agent), task_id)
    record.finished_at = clock(runtime.db).now()
    logs.emit(record.line(), record.trace)
    write_record(runtime.db, {**record.to_doc(), "parent": parent})
    return record


def _run_claimed(
    runtime: Runtime, ctx: HeartbeatContext, bet_id: str, seq: int, record: HeartbeatRecord
) -> None:
    from fleet.heartbeat import _process_bet, _renewing

    ttl = timedelta(seconds=ctx.protocols.protocols.escalation.claim_ttl_s)
    claims = Claims(runtime.db, ctx.agent, record.heartbeat_id, ttl)
    outcome: dict[str, Any] = {"bet_id": bet_id, "seq": seq}
    try:
        bet = runtime.enforcer.get(bet_id)
        if bet.seq != seq:
            outcome.update(outcome="skipped", error="moved by someone else")
        elif not claims.try_claim(bet_id, seq):  # our lease lapsed while queued and someone took it
            outcome.update(outcome="skipped", error="claimed elsewhere")
        else:
            with _renewing(claims, ttl):
                outcome = _process_bet(runtime, ctx, resolve_handler(ctx.spec), bet)
    finally:
        # Only once the renewer has stopped (see fleet.heartbeat._run_per_bet).
        claims.release_all()
        record.bets.append(outcome)
        ctx.count(str(outcome.get("outcome", "failed")))
        record.actions = dict(ctx.actions)
        record.trace = ctx.trace


def _context(runtime: Runtime, spec: AgentSpec, record: HeartbeatRecord) -> HeartbeatContext:
    """The context a bet task's handler gets: the same as its heartbeat's, under the task's id."""
    loaded = load_protocols(runtime.settings.protocols_dir)
    record.protocol_version, record.protocol_hash = loaded.version, loaded.hash
    return HeartbeatContext(
        spec=spec,
        heartbeat_id=record.heartbeat_id,
        protocols=loaded,
        registry=runtime.registry,
        enforcer=runtime.enforcer,
        board=runtime.board,
        db=runtime.db,
        pool=runtime.pool,
        debug=runtime.settings.debug,
    )


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
