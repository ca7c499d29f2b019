"""Wake on arrival: when a bet reaches a stage, run its owner's heartbeat now, not at its next slot.

The message carries no data: the woken agent reads the ledger as on any heartbeat
(reason ``"wake"``). Three bounds keep wakes from undoing the staggered schedule:

- **coalesced**: at most one pending wake per agent, and wakes of one agent at least
  ``FLEET_WAKE_MIN_GAP_S`` apart (a Redis ``SET NX PX`` key; a wake inside the gap is sent
  with a countdown to its end, not dropped), so 100 arrivals send one;
- **capped**: no wake while ``FLEET_WAKE_MAX_CONCURRENT`` heartbeats run or wait to start
  fleet-wide (a Redis sorted set of running heartbeats and pending wakes, each member
  scored with its expiry, so a SIGKILLed worker's entry lapses on its own); an agent
  turned away waits in a set and is woken when a heartbeat ends and frees a slot;
- **switchable**: ``FLEET_WAKE=false`` fleet-wide, ``wake: false`` in an agent's spec.

A bet arriving while its owner runs may be missed by that heartbeat (it listed its
candidates already); the agent is then flagged and woken again when that heartbeat ends.
Every wake is best effort: a Redis error costs latency, never a heartbeat or a commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis

from fleet.app.celery_app import get_app
from fleet.constants import (
    AGENT_LOCK_KEY,
    HEARTBEAT_TASK,
    RUNNING_HEARTBEATS_KEY,
    WAKE_AGAIN_KEY,
    WAKE_GAP_KEY,
    WAKE_WAITING_KEY,
)
from fleet.definitions.catalogue import AgentSpec, Registry
from fleet.runtime.records import HeartbeatRecord, Status
from fleet.runtime.renewer import renewing
from fleet.settings import Settings
from fleet.store import redis_client

logger = logging.getLogger("fleet.runtime.wake")

WakeOutcome = Literal["sent", "delayed", "pending", "capped", "deferred", "off"]

#: Admission, atomic in Redis so a burst of arrivals from many workers sends one wake per
#: agent and never passes the cap. KEYS: running set, gap key, again key, agent lock, waiting
#: set. ARGV: pending member, cap, gap (ms), pending lifetime (s), agent.
#: Returns {outcome, delay in ms}: a wake inside the gap is sent with that countdown.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('SET', KEYS[3], '1', 'EX', math.ceil(tonumber(ARGV[4])))
  return {'deferred', 0}
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {'pending', 0} end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  redis.call('SADD', KEYS[5], ARGV[5])
  return {'capped', 0}
end
local delay = 0
if tonumber(ARGV[3]) > 0 and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[3]) then
  delay = math.max(redis.call('PTTL', KEYS[2]), 0)
end
redis.call('ZADD', KEYS[1], now + delay / 1000 + tonumber(ARGV[4]), ARGV[1])
if delay > 0 then return {'delayed', delay} end
return {'sent', 0}
"""


class Waker(Protocol):
    """What waking needs: the agents, the settings and Redis (a heartbeat's Runtime has them)."""

    @property
    def registry(self) -> Registry: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def redis(self) -> redis.Redis: ...


@dataclass(frozen=True)
class Wakeup:
    """A :class:`Waker` for code outside a heartbeat that puts bets at a stage (seeding, MCP)."""

    registry: Registry
    settings: Settings
    redis: redis.Redis

    @classmethod
    def of(cls, registry: Registry, settings: Settings) -> Wakeup:
        return cls(registry, settings, redis_client(settings.broker_url))


#: Outcomes of a bet that leave it where it was: a batch of only these made no progress.
STAYED = frozenset({"deferred", "failed", "refused", "skipped", "abandoned", "corrupt"})


def pending_member(agent: str) -> str:
    """The running set's member standing for a wake of ``agent`` not started yet."""
    return f"wake:{agent}"


def running_member(heartbeat_id: str) -> str:
    """The running set's member standing for one running heartbeat."""
    return f"hb:{heartbeat_id}"


def pollers(runtime: Waker, stage: str) -> list[AgentSpec]:
    """Agents that poll ``stage`` and accept wakes."""
    return [spec for spec in runtime.registry if stage in spec.polls and spec.wake]


def on_arrival(runtime: Waker, stage: str) -> dict[str, WakeOutcome]:
    """A bet reached ``stage``: wake the agents polling it (within the bounds). Never raises."""
    return {spec.name: wake(runtime, spec) for spec in pollers(runtime, stage)}


def wake(runtime: Waker, spec: AgentSpec) -> WakeOutcome:
    """Send one wake heartbeat for ``spec`` if coalescing and the cap allow it; say what happened."""
    settings = runtime.settings
    if not (settings.wake and spec.wake):
        return "off"
    try:
        outcome, delay_s = _admit(runtime.redis, spec.name, settings.wake_max_concurrent,
                                  settings.wake_min_gap_s, settings.wake_expires_s)  # fmt: skip
        if outcome in ("sent", "delayed"):
            _send(spec, settings.wake_expires_s, delay_s)
        return outcome
    except (redis.RedisError, OSError) as exc:  # a lost wake costs latency only
        logger.warning("wake %s not sent: %s", spec.name, exc)
        return "off"


def _admit(
    client: redis.Redis, agent: str, cap: int, gap_s: float, expires_s: float
) -> tuple[WakeOutcome, float]:
    keys = [RUNNING_HEARTBEATS_KEY, WAKE_GAP_KEY.format(agent=agent), WAKE_AGAIN_KEY.format(agent=agent),
            AGENT_LOCK_KEY.format(agent=agent), WAKE_WAITING_KEY]  # fmt: skip
    args: list[str | int | float] = [pending_member(agent), cap, int(gap_s * 1000), expires_s, agent]
    # A registered script goes by its hash (EVALSHA): the body is sent once per server, not per move.
    outcome, delay_ms = client.register_script(_ADMIT)(keys=keys, args=args)
    text = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
    return text, int(delay_ms) / 1000  # type: ignore[return-value]


def _send(spec: AgentSpec, expires_s: float, delay_s: float) -> None:
    # expires: a wake stuck behind a backlog is dropped; its pending entry lapses at the same time.
    soft, hard = spec.time_limits
    get_app().send_task(
        HEARTBEAT_TASK,
        args=(spec.name,),
        kwargs={"reason": "wake"},
        queue=spec.queue,
        countdown=delay_s or None,
        expires=delay_s + expires_s,
        # Explicit: sent from a worker, Celery would stamp the app's global limits instead.
        soft_time_limit=soft,
        time_limit=hard,
    )


def running_count(client: redis.Redis) -> int:
    """Heartbeats running or woken-and-pending fleet-wide, as the cap counts them."""
    seconds, micros = client.time()
    client.zremrangebyscore(RUNNING_HEARTBEATS_KEY, "-inf", seconds + micros / 1e6)
    return int(client.zcard(RUNNING_HEARTBEATS_KEY))


#: A running heartbeat's entry in the cap lapses this long after its last renewal, so a
#: heartbeat SIGKILLed with its worker stops counting within one lease, not its time limit.
RUNNING_LEASE_S = 30.0


#: A running heartbeat's entry in the cap, in one round trip: KEYS: running set. ARGV: member,
#: lease (s), mode ("enter": add it, dropping the agent's pending wake ARGV[4] if given;
#: "renew": push back an entry still there, never re-create one the trim dropped).
_RUNNING = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
if ARGV[3] == 'renew' then return redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[1]) end
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[1], ARGV[4]) end
return redis.call('ZADD', KEYS[1], expiry, ARGV[1])
"""


@contextmanager
def tracked(runtime: Waker, agent: str, heartbeat_id: str, reason: str, ttl_s: float) -> Iterator[None]:
    """Count the heartbeat as running for the cap while the block runs (a woken one stops pending).

    The entry is a lease (at most :data:`RUNNING_LEASE_S`, renewed by the process's
    renewer while the block runs), so a dead heartbeat's entry lapses soon after it died.
    """
    client = runtime.redis
    lease = min(ttl_s, RUNNING_LEASE_S)
    member = running_member(heartbeat_id)
    script = client.register_script(_RUNNING)
    woken = pending_member(agent) if reason == "wake" else ""
    try:
        script(keys=[RUNNING_HEARTBEATS_KEY], args=[member, lease, "enter", woken])
    except redis.RedisError as exc:
        logger.warning("heartbeat %s not counted for the wake cap: %s", heartbeat_id, exc)

    def renew() -> None:
        # A failure raises into the renewer, which logs it and tries again next period.
        script(keys=[RUNNING_HEARTBEATS_KEY], args=[member, lease, "renew", ""])

    try:
        with renewing(lease / 3, renew, f"wake-cap entry {member}"):
            yield
    finally:
        try:
            client.zrem(RUNNING_HEARTBEATS_KEY, member)
        except redis.RedisError as exc:  # the entry lapses at its expiry
            logger.warning("heartbeat %s still counted for the wake cap: %s", heartbeat_id, exc)


def left_backlog(runtime: Waker, record: HeartbeatRecord) -> bool:
    """A polling heartbeat took a full batch and moved some of it: more may be waiting.

    A batch that only deferred, failed or was refused is not a reason to run again at once
    (the schedule comes back to it); a part of a fanned-out heartbeat that moved its bet
    freed a slot of the agent's fleet-wide limit.
    """
    spec = runtime.registry.get(record.agent)
    if spec is None or not spec.polls:
        return False
    moved = any(bet.get("outcome") not in STAYED for bet in record.bets)
    if record.parent is not None:
        return moved
    taken = record.actions.get("claimed", 0) + record.actions.get("dispatched", 0)
    return moved and taken >= spec.batch_size


def after_heartbeat(runtime: Waker, record: HeartbeatRecord) -> None:
    """After a heartbeat (its lock released and its slot freed): wake for the bets it created,
    itself if a bet arrived while it ran (or it was a wake that found the agent running) or it
    left a backlog, and agents a full cap turned away."""
    if record.actions.get("created"):
        on_arrival(runtime, runtime.registry.pipeline.initial_stage)
    client = runtime.redis
    try:
        with client.pipeline(transaction=False) as pipe:  # one round trip on every heartbeat's path
            pipe.getdel(WAKE_AGAIN_KEY.format(agent=record.agent))
            pipe.spop(WAKE_WAITING_KEY, runtime.settings.wake_max_concurrent)
            flagged, popped = pipe.execute()
        # The gap holds between any two wakes of one agent: a wake for an arrival during this
        # run, or for a backlog it left, is delayed to the gap's end, never sent inside it.
        again = bool(flagged) or left_backlog(runtime, record)
        waiting: Any = popped or []
    except redis.RedisError:
        return
    # A wake that found another run of its agent going may have come after that run listed
    # its bets: wake again (deferred to that run's end if it is still going).
    lost = record.reason == "wake" and record.status == Status.SKIPPED
    names = [record.agent] if again or lost else []
    names += [name.decode() if isinstance(name, bytes) else str(name) for name in waiting]
    for name in dict.fromkeys(names):  # once each, in order
        spec = runtime.registry.get(name)
        if spec is not None:
            wake(runtime, spec)  # turned away again while the fleet is full: it waits again
