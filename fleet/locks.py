"""One heartbeat per agent at a time across every worker: a Redis lock with a TTL.

redis-py's :class:`redis.lock.Lock` (a token in a key with an expiry, released
only by its holder) does exactly this; the TTL outlives the heartbeat's hard time
limit, so a SIGKILLed holder blocks its agent for at most that long.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import LockError

from fleet.constants import AGENT_LOCK_KEY
from fleet.errors import BrokerUnavailable

#: Seconds the lock outlives the agent's time limit (margin for start-up and the final write).
LOCK_MARGIN_S = 5


@contextmanager
def agent_lock(client: redis.Redis, agent: str, time_limit_s: int) -> Iterator[bool]:
    """Hold the agent's lock for the block; yields False (and holds nothing) if it is taken."""
    lock = client.lock(AGENT_LOCK_KEY.format(agent=agent), timeout=time_limit_s + LOCK_MARGIN_S)
    try:
        acquired = bool(lock.acquire(blocking=False))
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"agent lock for {agent!r}: {exc}") from None
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except LockError:
                pass  # it expired first: the TTL did its job, someone else may hold it now
            except redis.RedisError:
                pass  # the key expires on its own; the heartbeat's outcome is already recorded
