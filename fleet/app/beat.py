"""Beat without a single point of failure: any number of ``celery -A fleet beat``, one active.

:class:`SingletonScheduler` is Celery's own :class:`~celery.beat.PersistentScheduler`
that ticks only while it holds a Redis lock (redis-py :class:`~redis.lock.Lock`,
``FLEET_BEAT_LOCK_TTL_S``), renewed on every tick. A standby beat polls the lock a few
times per TTL; when the active beat dies its lock lapses and the standby takes over
within one TTL. Each send is also recorded per (entry, slot) with ``SET NX``, so a slot
the dead beat already sent is not sent again by the one taking over, nor by two beats
that overlap after a pause longer than the TTL. The slot travels in the message's
``fleet_beat_slot`` header (epoch ms).

Why not celery-redbeat (the maintained library that keeps the schedule in Redis behind a
lock): it serialises every schedule to JSON with an encoder that knows only
``schedule``, ``crontab``, ``solar`` and its ``rrule``; fleet's staggered
:class:`~fleet.app.schedule.DaySchedule` (and so the compressed-time demo day) is none of
them, and re-expressing it as one rrule entry per (agent, slot) multiplies the entries
and loses the sub-second offsets of compressed days. Holding the lock around Celery's
own scheduler keeps the schedule objects as they are.
"""

from __future__ import annotations

import copy
import math
import os
import socket
from contextlib import suppress
from functools import cached_property
from typing import Any

import redis
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.utils.log import get_logger
from redis.exceptions import LockError
from redis.lock import Lock

from fleet.app.schedule import DaySchedule
from fleet.constants import BEAT_LOCK_KEY, BEAT_SENT_KEY
from fleet.settings import Settings, load_settings
from fleet.store import redis_client

logger = get_logger(__name__)

#: The message header carrying the slot an entry was sent for (epoch milliseconds).
SLOT_HEADER = "fleet_beat_slot"
#: A standby checks the lock, and the active beat renews it, this many times per TTL.
CHECKS_PER_TTL = 3
#: Send records outlive their slot by this long (they only need to outlive a takeover).
SENT_MARGIN_S = 60


class SingletonScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery's persistent scheduler, ticking only while it holds the fleet's beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.active = False
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        super().__init__(*args, **kwargs)

    @cached_property
    def settings(self) -> Settings:
        return load_settings()

    @cached_property
    def client(self) -> redis.Redis:
        return redis_client(self.settings.broker_url)

    @cached_property
    def lock(self) -> Lock:
        # Not thread-local: the token must survive whatever thread beat ticks on.
        lock: Lock = self.client.lock(
            BEAT_LOCK_KEY, timeout=self.settings.beat_lock_ttl_s, thread_local=False
        )
        return lock

    @property
    def check_every_s(self) -> float:
        return self.settings.beat_lock_ttl_s / CHECKS_PER_TTL

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One tick of Celery's scheduler when active; otherwise wait and check the lock again."""
        if not self.holds_lock():
            return self.check_every_s
        return float(min(super().tick(*args, **kwargs), self.check_every_s))

    def holds_lock(self) -> bool:
        """Renew the lock if this beat holds it, else try to take it; True when active."""
        try:
            if self.active:
                self.lock.reacquire()
            elif self.lock.acquire(blocking=False):
                logger.info("beat: active (%s holds %s)", self.identity, BEAT_LOCK_KEY)
                self.active = True
        except LockError:  # it lapsed (a long pause): another beat may be active now
            logger.warning("beat: lost %s; standing by", BEAT_LOCK_KEY)
            self.active = False
        except redis.RedisError as exc:  # skip this tick; nothing can be sent without Redis anyway
            logger.warning("beat: cannot reach Redis for %s: %s", BEAT_LOCK_KEY, exc)
            return False
        return self.active

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        """Send the entry unless its current slot was sent already (by this or another beat)."""
        slot = slot_of(entry)
        if slot is not None:
            key = BEAT_SENT_KEY.format(entry=entry.name, slot=slot)
            ttl = math.ceil(entry.schedule.day_seconds) + SENT_MARGIN_S
            if not self.client.set(key, self.identity, nx=True, ex=ttl):
                logger.info("beat: %s slot %s was sent already; skipped", entry.name, slot)
                return None
            entry = copy.copy(entry)
            entry.options = {
                **entry.options,
                "headers": {**entry.options.get("headers", {}), SLOT_HEADER: slot},
            }
        return super().apply_async(entry, producer, advance, **kwargs)

    def close(self) -> None:
        """Stop, and hand the lock over at once instead of after its TTL."""
        try:
            super().close()
        finally:
            if self.active:
                with suppress(LockError, redis.RedisError):  # it lapses on its own
                    self.lock.release()
                self.active = False


def slot_of(entry: ScheduleEntry) -> int | None:
    """The slot (epoch ms of its latest start) a due entry is sent for; None if not a day schedule."""
    schedule = entry.schedule
    if not isinstance(schedule, DaySchedule):
        return None
    return round(schedule.last_at_or_before(schedule.now().timestamp()) * 1000)
