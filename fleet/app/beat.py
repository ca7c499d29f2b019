"""Beat without a single point of failure: any number of ``celery -A fleet beat``, one active.

:class:`SingletonScheduler` is Celery's own :class:`~celery.beat.PersistentScheduler`
that ticks only while it holds a Redis lock (redis-py :class:`~redis.lock.Lock`,
``FLEET_BEAT_LOCK_TTL_S``), renewed on every tick. A standby beat polls the lock a few
times per TTL; when the active beat dies its lock lapses and the standby takes over
within one TTL.

**Once per (entry, slot).** Every schedule type has a slot: the latest start at or before
now of a :class:`~fleet.app.schedule.DaySchedule` or a ``crontab`` (real time), the
interval boundary of a plain ``schedule``. A send is first recorded by inserting
``<entry>@<slot>`` into the store's ``beat_slots`` (a unique insert: atomic on FerretDB and
MongoDB, and kept when Redis loses its keys); only the beat whose insert wins sends. So a
slot the dead beat already sent is not sent again by the one taking over, nor by two beats
that overlap after a pause longer than the TTL, nor after a Redis restart without
persistence. With the store unreachable the check falls back to Redis (``SET NX``). The slot
travels in the message's ``fleet_beat_slot`` header (epoch ms).

**Catch-up.** A standby does not tick, so at takeover every entry looks due to it: it sends
each entry's latest slot if nobody sent it (one catch-up send, however long the gap), and
records the slots before it that nobody sent as ``missed`` heartbeats (reason
``scheduled``), so a gap in the schedule is on the record instead of silently gone.

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
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import redis
from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import crontab
from celery.utils.log import get_logger
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError
from redis.exceptions import LockError
from redis.lock import Lock

from fleet.app.schedule import DaySchedule
from fleet.constants import BEAT_LAST_KEY, BEAT_LOCK_KEY, BEAT_SENT_KEY, BEAT_SLOTS
from fleet.errors import LedgerUnavailable
from fleet.settings import Settings, load_settings
from fleet.store import Document, database, redis_client, translated

logger = get_logger(__name__)

#: The message header carrying the slot an entry was sent for (epoch milliseconds).
SLOT_HEADER = "fleet_beat_slot"
#: A standby checks the lock, and the active beat renews it, this many times per TTL.
CHECKS_PER_TTL = 3
#: Send records outlive their slot by this long (they only need to outlive a takeover).
SENT_MARGIN_S = 60
#: How far back a crontab's latest slot, and forward its missed slots, are looked for.
CRON_HORIZON = timedelta(days=8)
#: At most this many missed slots of one entry are recorded after a gap (the rest: one line).
MAX_MISSED_RECORDED = 100


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

    @cached_property
    def db(self) -> Database[Document]:
        return database(self.settings)

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        """Send the entry unless its current slot was sent already (by this or another beat)."""
        slot = slot_of(entry)
        if not self.claim_slot(entry, slot):
            logger.info("beat: %s slot %s was sent already; skipped", entry.name, slot)
            return None
        self.record_missed(entry, slot)
        entry = copy.copy(entry)
        entry.options = {**entry.options, "headers": {**entry.options.get("headers", {}), SLOT_HEADER: slot}}
        return super().apply_async(entry, producer, advance, **kwargs)

    def claim_slot(self, entry: ScheduleEntry, slot: int) -> bool:
        """True when this beat is the one to send ``entry`` for ``slot`` (a unique insert wins)."""
        try:
            return self.insert_slot(entry, slot, missed=False)
        except LedgerUnavailable as exc:  # the store down: Redis keeps the check meanwhile
            logger.warning("beat: store unreachable for slot %s of %s (%s); checking in Redis", slot,
                           entry.name, exc)  # fmt: skip
            key = BEAT_SENT_KEY.format(entry=entry.name, slot=slot)
            return bool(self.client.set(key, self.identity, nx=True, ex=_sent_ttl_s(entry)))

    def insert_slot(self, entry: ScheduleEntry, slot: int, *, missed: bool) -> bool:
        """Insert ``<entry>@<slot>`` into ``beat_slots``; False when it is there already."""
        agent = entry.args[0] if entry.args else entry.name
        doc = {"_id": f"{entry.name}@{slot}", "entry": entry.name, "agent": str(agent), "slot": slot,
               "by": self.identity, "missed": missed, "at": datetime.now(UTC)}  # fmt: skip
        with translated("beat slot"):
            try:
                self.db[BEAT_SLOTS].insert_one(doc)
            except DuplicateKeyError:
                return False
        return True

    def record_missed(self, entry: ScheduleEntry, slot: int) -> None:
        """Record the slots between this entry's last send and ``slot`` that nobody sent."""
        try:
            previous = self.client.set(BEAT_LAST_KEY.format(entry=entry.name), slot, get=True)
        except redis.RedisError:
            return  # best effort: the send itself does not depend on it
        if previous is None:
            return  # first send this beat knows of: nothing to compare with
        missed = slots_between(entry, int(previous), slot)
        for gap_slot in missed[:MAX_MISSED_RECORDED]:
            self.record_unsent(entry, gap_slot)
        if len(missed) > MAX_MISSED_RECORDED:
            logger.warning("beat: %s missed %d more slots", entry.name, len(missed) - MAX_MISSED_RECORDED)

    def record_unsent(self, entry: ScheduleEntry, slot: int) -> None:
        """One missed slot on the record (``missed: true`` in ``beat_slots``), unless a beat sent it."""
        try:
            if not self.insert_slot(entry, slot, missed=True):
                return  # sent after all
        except LedgerUnavailable:
            return  # the store is down: nothing to record it in
        at = datetime.fromtimestamp(slot / 1000, UTC).isoformat(timespec="seconds")
        logger.warning("beat: %s slot %s was sent by no beat (missed; a later slot catches up once)",
                       entry.name, at)  # fmt: skip

    def close(self) -> None:
        """Stop, and hand the lock over at once instead of after its TTL."""
        try:
            super().close()
        finally:
            if self.active:
                with suppress(LockError, redis.RedisError):  # it lapses on its own
                    self.lock.release()
                self.active = False


def _sent_ttl_s(entry: ScheduleEntry) -> int:
    day = entry.schedule.day_seconds if isinstance(entry.schedule, DaySchedule) else 86400
    return math.ceil(day) + SENT_MARGIN_S


def _ms(t: float) -> int:
    return round(t * 1000)


def slot_of(entry: ScheduleEntry) -> int:
    """The slot (epoch ms of its latest start at or before now) a due entry is sent for."""
    schedule = entry.schedule
    now = schedule.now()
    if isinstance(schedule, DaySchedule):
        return _ms(schedule.last_at_or_before(now.timestamp()))
    if isinstance(schedule, crontab):
        return _ms(last_cron_slot(schedule, now).timestamp())
    period = _period_s(schedule)
    if period:
        return _ms(math.floor(now.timestamp() / period) * period)
    return _ms(math.floor(now.timestamp()))  # any other schedule: once per second at most


def _period_s(schedule: Any) -> float | None:
    run_every = getattr(schedule, "run_every", None)
    seconds = run_every.total_seconds() if isinstance(run_every, timedelta) else None
    return seconds if seconds and seconds > 0 else None


def _cron_matches(cron: crontab, t: datetime) -> bool:
    dow = t.isoweekday() % 7  # crontab: 0 is Sunday
    return (t.minute in cron.minute and t.hour in cron.hour and dow in cron.day_of_week
            and t.day in cron.day_of_month and t.month in cron.month_of_year)  # fmt: skip


def last_cron_slot(cron: crontab, now: datetime) -> datetime:
    """The latest minute at or before ``now`` the crontab fires at (its slot)."""
    t = now.replace(second=0, microsecond=0)
    oldest = t - CRON_HORIZON
    while t > oldest:
        if _cron_matches(cron, t):
            return t
        t -= timedelta(minutes=1)
    return now.replace(second=0, microsecond=0)  # fires less than weekly: the minute is its slot


def slots_between(entry: ScheduleEntry, after_ms: int, before_ms: int) -> list[int]:
    """The entry's slots strictly between two slots (epoch ms), oldest first."""
    schedule, found = entry.schedule, list[int]()
    if isinstance(schedule, DaySchedule):
        t = schedule.next_after(after_ms / 1000)
        while _ms(t) < before_ms and len(found) <= MAX_MISSED_RECORDED:
            found.append(_ms(t))
            t = schedule.next_after(t)
    elif isinstance(schedule, crontab):
        minute = datetime.fromtimestamp(after_ms / 1000, UTC).replace(second=0, microsecond=0)
        end = min(datetime.fromtimestamp(before_ms / 1000, UTC), minute + CRON_HORIZON)
        minute += timedelta(minutes=1)
        while minute < end and len(found) <= MAX_MISSED_RECORDED:
            if _cron_matches(schedule, minute):
                found.append(_ms(minute.timestamp()))
            minute += timedelta(minutes=1)
    elif period := _period_s(schedule):
        t = after_ms / 1000 + period
        while _ms(t) < before_ms and len(found) <= MAX_MISSED_RECORDED:
            found.append(_ms(t))
            t += period
    return found
