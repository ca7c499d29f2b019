"""Once per (entry, slot) in real time: crontab entries, a Redis that lost its keys, missed slots.

Two schedulers in this process stand for two beats (the takeover itself, with real beat
processes, is in test_beat.py); their clocks are set through the schedules' ``nowfun``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from celery.beat import ScheduleEntry
from celery.schedules import crontab

from fleet.app.beat import SLOT_HEADER, SingletonScheduler
from fleet.app.celery_app import make_app
from fleet.constants import BEAT_SLOTS, HEARTBEAT_TASK
from fleet.settings import load_settings

#: A real-time agent entry: 01:07 and 13:07 every day, as the default fleet's crontabs.
SLOTS = {"hour": "1,13", "minute": "7"}


class Clock:
    """The time both beats' schedules read."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def beats(stack, redis, tmp_path: Path) -> Iterator[Callable[[str], SingletonScheduler]]:
    app = make_app(load_settings())
    made: list[SingletonScheduler] = []

    def make(name: str) -> SingletonScheduler:
        scheduler = SingletonScheduler(app=app, schedule_filename=str(tmp_path / f"{name}.db"))
        scheduler.identity = name
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.close()


def entry(app, clock: Clock) -> ScheduleEntry:
    return ScheduleEntry(
        name="heartbeat:checker",
        task=HEARTBEAT_TASK,
        schedule=crontab(nowfun=clock, **SLOTS),
        args=("checker",),
        options={"queue": "alpha"},
        app=app,
    )


def sent_slots(redis) -> list[int]:
    found = []
    for raw in redis.lrange("alpha", 0, -1):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        assert args == ["checker"]
        found.append(message["headers"][SLOT_HEADER])
    return found


def ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def test_a_crontab_slot_is_sent_once_by_two_beats_and_after_redis_lost_its_keys(beats, redis, db) -> None:
    # Given two beats whose clocks stand 20 s after the 13:07 slot
    clock = Clock(datetime(2026, 12, 2, 13, 7, 20, tzinfo=UTC))
    first, second = beats("beat-a"), beats("beat-b")
    # When both send the entry (a takeover: the standby's schedule says it is due)
    first.apply_async(entry(first.app, clock))
    second.apply_async(entry(second.app, clock))
    # Then the slot went out once, with its slot in the header
    assert sent_slots(redis) == [ms(datetime(2026, 12, 2, 13, 7, tzinfo=UTC))]
    # And after Redis lost every key (a restart without persistence), it is still not sent again
    redis.delete("alpha")
    redis.flushdb()
    second.apply_async(entry(second.app, clock))
    assert sent_slots(redis) == []
    # When the next slot comes, the beat that holds on sends it, once
    clock.at = datetime(2026, 12, 3, 1, 7, 3, tzinfo=UTC)
    second.apply_async(entry(second.app, clock))
    first.apply_async(entry(first.app, clock))
    assert sent_slots(redis) == [ms(datetime(2026, 12, 3, 1, 7, tzinfo=UTC))]
    assert db[BEAT_SLOTS].count_documents({"missed": True}) == 0


def test_a_gap_spanning_slots_sends_the_latest_once_and_records_the_ones_before_as_missed(
    beats, redis, db
) -> None:
    # Given a beat that sent the 13:07 slot and died
    clock = Clock(datetime(2026, 12, 2, 13, 7, 1, tzinfo=UTC))
    beats("beat-a").apply_async(entry(make_app(load_settings()), clock))
    # When the standby takes over a day and a half later (slots 01:07, 13:07, 01:07 passed)
    clock.at = datetime(2026, 12, 4, 1, 30, tzinfo=UTC)
    standby = beats("beat-b")
    standby.apply_async(entry(standby.app, clock))
    # Then it sends only the latest slot, once (its catch-up), and records the others as missed
    sent = [datetime(2026, 12, 2, 13, 7, tzinfo=UTC), datetime(2026, 12, 4, 1, 7, tzinfo=UTC)]
    assert sorted(sent_slots(redis)) == [ms(at) for at in sent]
    missed = sorted(doc["slot"] for doc in db[BEAT_SLOTS].find({"missed": True}))
    gap = [datetime(2026, 12, 3, 1, 7, tzinfo=UTC), datetime(2026, 12, 3, 13, 7, tzinfo=UTC)]
    assert missed == [ms(at) for at in gap]
    assert {doc["agent"] for doc in db[BEAT_SLOTS].find({"missed": True})} == {"checker"}
