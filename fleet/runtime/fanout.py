"""Fan-out within an agent: a polling heartbeat hands each bet to its own Celery task.

Rule (documented in the spec field): an agent with ``fan_out: N > 0`` whose heartbeat
finds more candidates than one process runs at once on its bet threads
(:data:`fleet.runtime.runtime.BET_THREADS`) sends up to ``min(batch_size, N - running)``
bets, one ``fleet.bet`` task each, on the agent's queue, so any worker serving that queue
processes it; smaller batches stay in-process, where they already run in parallel. The
polling heartbeat returns once it has dispatched, so the agent lock still allows one
polling heartbeat at a time while the bets run anywhere.

- **In flight**: a Redis sorted set per agent holds each dispatched (bet, seq), scored with
  an expiry: one claim TTL while queued, renewed by the running task. A heartbeat skips
  the bets in it, and its size is the agent's fleet-wide concurrency (``fan_out``).
- **A bet task** runs the same steps as a heartbeat (:data:`fleet.runtime.steps.BET_STEPS`:
  protocols, the instructions its heartbeat ran with, the budget gate, the tools preflight)
  under the agent's own time limits, then the in-process runner with a batch of one: it
  takes the store lease, renews it and its in-flight mark while it works, releases both
  after. A task whose worker died stops renewing: both lapse and the next heartbeat
  dispatches the bet again; a stale duplicate finds the lease taken and skips.
- **Records**: each bet task writes a part record (:mod:`fleet.runtime.records`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import suppress

import redis

from fleet.app.celery_app import get_app
from fleet.constants import BET_TASK, FANOUT_RUNNING_KEY
from fleet.definitions.catalogue import AgentSpec
from fleet.errors import CorruptBet
from fleet.ledger import Bet
from fleet.runtime import handoff
from fleet.runtime.run import Run
from fleet.runtime.runtime import BET_THREADS


def wanted(spec: AgentSpec, candidates: int) -> bool:
    """Fan out when the spec allows it and the batch is more than one process runs at once."""
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


def dispatch(run: Run, candidates: list[Bet | CorruptBet]) -> None:
    """The fan-out batch runner: send one bet task per candidate not in flight yet, within the limit.

    The dispatch itself writes only to Redis (one sorted-set member per bet, then the
    message), so one heartbeat hands out hundreds of bets a second; the bet task takes
    the store lease when it starts. A bet counts as in flight for one claim TTL while
    queued, then while its task renews it: a dead task's bet is dispatched again after that.
    """
    ctx, record, client = run.ctx, run.record, run.runtime.redis
    spec = ctx.spec
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
    stamp: dict[str, object] = {"instructions_hash": record.instructions_hash, "debug": run.debug}
    for bet in chosen:
        task_id = uuid.uuid4().hex
        _send(spec, bet, task_id, record.heartbeat_id, stamp)
        entry = {"bet_id": bet.bet_id, "seq": bet.seq, "outcome": "dispatched", "task_id": task_id}
        record.bets.append({**entry, **picked[bet.bet_id]})
    ctx.count("dispatched", len(chosen))


def _send(spec: AgentSpec, bet: Bet, task_id: str, parent: str, stamp: dict[str, object]) -> None:
    # The listed view travels with the task, as an in-process batch hands it to its bet threads;
    # so does what the heartbeat read once (its instructions hash) and its debug switch.
    soft, hard = spec.time_limits
    get_app().send_task(
        BET_TASK,
        args=(spec.name, bet.bet_id, bet.seq, parent, bet.model_dump(mode="json"), stamp),
        task_id=task_id,
        queue=spec.queue,
        # Explicit: sent from a worker, Celery would stamp the app's global limits instead.
        soft_time_limit=soft,
        time_limit=hard,
    )


def in_flight_renewal(run: Run, ttl_s: float) -> Callable[[], None]:
    """Push back a part's in-flight mark by one TTL (renewed with its lease while it runs)."""
    client, view = run.runtime.redis, run.view
    if view is None:
        raise RuntimeError("not a fanned-out bet")  # a step order bug, never input
    key, mark = FANOUT_RUNNING_KEY.format(agent=run.spec.name), member(view.bet_id, view.seq)

    def renew() -> None:
        # xx: only refresh a mark that exists (a finished bet's mark is never re-created).
        with suppress(redis.RedisError):
            client.zadd(key, {mark: _now_s(client) + ttl_s}, xx=True)

    return renew


def release(client: redis.Redis, agent: str, view: Bet) -> None:
    """The part is over: its bet is no longer in flight."""
    client.zrem(FANOUT_RUNNING_KEY.format(agent=agent), member(view.bet_id, view.seq))
