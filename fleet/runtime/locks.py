"""One heartbeat per agent at a time across every worker: a short Redis lease, kept alive.

redis-py's :class:`redis.lock.Lock` (a token in a key with an expiry, released only
by its holder) does exactly this. The lease is short (``AGENT_LOCK_TTL_S``, 30 s) and
the process's renewer (:mod:`fleet.runtime.renewer`) pushes it back every third of it
while the heartbeat runs: a live heartbeat keeps its lock however long it runs (Celery's
time limits end it, not the lock), and a SIGKILLed holder blocks its agent for one lease at most.

The token is the heartbeat's id (Celery's task id), so a redelivered copy of a
heartbeat recognises its own earlier run's lease and waits for it to lapse.

A renewal that finds the key gone or someone else's token (failover, eviction,
FLUSHDB), or that could not reach Redis for a whole lease, means the lock is lost:
:attr:`AgentLock.lost` is set and ``on_lost`` is called, and the heartbeat stops
starting work. The lost lock is never touched again.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from fleet.constants import AGENT_LOCK_KEY, AGENT_LOCK_RENEWALS_PER_TTL, AGENT_LOCK_TTL_S
from fleet.errors import BrokerUnavailable
from fleet.runtime.renewer import renewing


@dataclass
class AgentLock:
    """The outcome of taking an agent's lock; true when this heartbeat holds it."""

    key: str
    acquired: bool
    holder: str | None = None  # the holder's token when someone else has it
    lost: threading.Event = field(default_factory=threading.Event)

    def __bool__(self) -> bool:
        return self.acquired


@contextmanager
def agent_lock(
    client: redis.Redis,
    agent: str,
    ttl_s: float = AGENT_LOCK_TTL_S,
    token: str | None = None,
    on_lost: Callable[[], None] | None = None,
) -> Iterator[AgentLock]:
    """Hold the agent's lock for the block; yields a false :class:`AgentLock` if it is taken."""
    key = AGENT_LOCK_KEY.format(agent=agent)
    # Not thread-local: the renewer thread must see the token the acquiring thread got.
    lock = client.lock(key, timeout=ttl_s, thread_local=False)
    hold = _acquire(client, lock, key, token or uuid.uuid4().hex, ttl_s)
    if not hold:
        yield hold
        return
    renewal = partial(_renew, lock, hold, ttl_s, on_lost, [time.monotonic()])
    try:
        with renewing(ttl_s / AGENT_LOCK_RENEWALS_PER_TTL, renewal, f"agent lock {key}"):
            yield hold
    finally:
        if not hold.lost.is_set():
            # LockError: it lapsed first, someone else may hold it now. RedisError: the key
            # expires on its own within one lease; the heartbeat's outcome is already known.
            with suppress(LockError, redis.RedisError):
                lock.release()


def _acquire(client: redis.Redis, lock: Lock, key: str, token: str, ttl_s: float) -> AgentLock:
    try:
        if lock.acquire(blocking=False, token=token):
            return AgentLock(key, True)
        holder = client.get(key)
        # Our own earlier run (a redelivery after a crash): its lease lapses within one TTL.
        mine = holder == token.encode()
        if mine and lock.acquire(blocking=True, blocking_timeout=ttl_s + 1, token=token):
            return AgentLock(key, True)
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"agent lock {key!r}: {exc}") from None
    return AgentLock(key, False, holder.decode(errors="replace") if isinstance(holder, bytes) else None)


def _renew(
    lock: Lock, hold: AgentLock, ttl_s: float, on_lost: Callable[[], None] | None, renewed_at: list[float]
) -> bool:
    """Reset the lease (``renewed_at[0]``: when it last worked); False once the lock is lost."""
    try:
        lock.reacquire()
        renewed_at[0] = time.monotonic()
        return True
    except LockError:
        pass  # gone, or someone else's token: lost
    except redis.RedisError:
        if time.monotonic() - renewed_at[0] < ttl_s:
            return True  # a blip: the lease still runs; the next renewal may get through
    hold.lost.set()
    if on_lost is not None:
        on_lost()
    return False


def held_locks(client: redis.Redis, agents: list[str]) -> dict[str, float]:
    """The agents whose lock is held now, each with the seconds left on its TTL (read only)."""
    try:
        pipe = client.pipeline(transaction=False)
        for agent in agents:
            pipe.pttl(AGENT_LOCK_KEY.format(agent=agent))
        ttls = pipe.execute()
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"cannot read agent locks: {exc}") from None
    # PTTL: -2 no key (free), -1 a key without expiry (held, which agent_lock never leaves).
    return {agent: max(int(ms), 0) / 1000 for agent, ms in zip(agents, ttls, strict=True) if int(ms) != -2}
