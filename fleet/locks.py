"""One heartbeat per agent at a time across every worker: a Redis lock with a TTL.

redis-py's :class:`redis.lock.Lock` (a token in a key with an expiry, released
only by its holder) does exactly this. The TTL is the agent's time limit plus a
margin, and the holder pushes it back while the heartbeat runs: the agent's time
limit is not Celery's hard limit (one for every task), so a heartbeat may run past
it and must not lose its lock meanwhile. A SIGKILLed holder stops renewing, so it
blocks its agent for one TTL at most.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis
from redis.exceptions import LockError
from redis.lock import Lock

from fleet.constants import AGENT_LOCK_KEY
from fleet.errors import BrokerUnavailable

#: Seconds the lock outlives the agent's time limit (margin for start-up and the final write).
LOCK_MARGIN_S = 5
#: The holder renews the lock this many times per TTL (so one missed renewal is harmless).
RENEWALS_PER_TTL = 3


@contextmanager
def agent_lock(client: redis.Redis, agent: str, time_limit_s: int) -> Iterator[bool]:
    """Hold the agent's lock for the block; yields False (and holds nothing) if it is taken."""
    ttl = time_limit_s + LOCK_MARGIN_S
    # Not thread-local: the renewer thread must see the token the acquiring thread got.
    lock = client.lock(AGENT_LOCK_KEY.format(agent=agent), timeout=ttl, thread_local=False)
    try:
        acquired = bool(lock.acquire(blocking=False))
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"agent lock for {agent!r}: {exc}") from None
    if not acquired:
        yield False
        return
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(lock, ttl / RENEWALS_PER_TTL, stop), name="fleet-lock-renewer", daemon=True
    )
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join(timeout=5)
        # LockError: it expired first, someone else may hold it now. RedisError: the key
        # expires on its own; the heartbeat's outcome is already recorded.
        with suppress(LockError, redis.RedisError):
            lock.release()


def _renew(lock: Lock, every_s: float, stop: threading.Event) -> None:
    """Reset the lock's TTL every ``every_s`` until ``stop`` is set or the lock is lost."""
    while not stop.wait(every_s):
        try:
            lock.reacquire()
        except LockError:
            return  # it expired and may be someone else's: never touch it again
        except redis.RedisError:
            continue  # a blip: the next renewal still comes before the TTL runs out


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
