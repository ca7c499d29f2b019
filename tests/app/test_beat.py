"""Two real ``celery -A fleet beat`` processes: one sends, the other takes over when it dies."""

from __future__ import annotations

import base64
import json
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from celery.schedules import crontab

from fleet.app.beat import SLOT_HEADER, SingletonScheduler, last_cron_slot, slot_of
from fleet.app.schedule import DaySchedule
from fleet.constants import BEAT_LOCK_KEY

from ..conftest import Worker, celery_process, wait_for
from ..runtime.conftest import TEST_FLEET_ENV

#: A fleet day of 12 s: each test agent has a slot every 6 s, so the fleet sends one every ~2 s.
#: The lock lives 5 s (renewed every ~1.7 s), so a loaded machine does not fail it over early.
BEAT_ENV = {**TEST_FLEET_ENV, "FLEET_DAY_SECONDS": "12", "FLEET_BEAT_LOCK_TTL_S": "5"}


def sent(redis) -> list[tuple[str, int | None]]:
    """(agent, slot) of every heartbeat waiting in the test fleet's queues (no worker runs)."""
    found = []
    for queue in ("alpha", "beta"):
        for raw in redis.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            found.append((args[0], message["headers"].get(SLOT_HEADER)))
    return found


@pytest.fixture
def start_beat(stack, redis, tmp_path: Path) -> Iterator[Callable[[str], Worker]]:
    """Factory: start a real beat with the test fleet's schedule; all are stopped after the test."""
    started: list[Worker] = []

    def start(name: str) -> Worker:
        log = tmp_path / f"{name}.log"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fleet",
            "beat",
            "-s",
            str(tmp_path / f"{name}.db"),
            "-l",
            "INFO",
        ]
        proc = celery_process(cmd, {**stack.env, **BEAT_ENV}, log)
        beat = Worker(name, proc, log)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


@pytest.mark.slow
def test_the_standby_beat_takes_over_and_no_slot_is_sent_twice(redis, start_beat) -> None:
    # Given an active beat sending the test fleet's heartbeats, and a standby beat
    first = start_beat("beat-a")
    wait_for(lambda: "beat: active" in first.output(), 60, "the first beat active")
    second = start_beat("beat-b")
    wait_for(lambda: "beat: Starting" in second.output(), 60, "the second beat started")
    wait_for(lambda: len(sent(redis)) >= 4, 60, "four heartbeats sent")
    assert "beat: active" not in second.output()  # one lock, one active beat
    # When the active beat is SIGKILLed (it cannot release its lock)
    first.stop(signal.SIGKILL)
    before = len(sent(redis))
    # Then the standby takes over and keeps sending
    wait_for(lambda: "beat: active" in second.output(), 60, "the standby active")
    wait_for(lambda: len(sent(redis)) >= before + 4, 60, "four more heartbeats")
    # And no (agent, slot) was sent twice, across both beats
    messages = sent(redis)
    assert all(slot is not None for _, slot in messages)
    assert [pair for pair, n in Counter(messages).items() if n > 1] == []
    assert redis.exists(BEAT_LOCK_KEY)


def test_a_slot_is_the_latest_start_at_or_before_now() -> None:
    schedule = DaySchedule([0, 43200], day_seconds=12)  # starts at 0 s and 6 s of each 12 s day
    assert schedule.last_at_or_before(1200.0) == 1200.0
    assert schedule.last_at_or_before(1205.9) == 1200.0
    assert schedule.last_at_or_before(1206.0) == 1206.0
    assert schedule.last_at_or_before(1211.0) == 1206.0
    assert schedule.next_after(schedule.last_at_or_before(1203.0)) == 1206.0


def test_an_interval_entry_has_the_interval_boundary_as_its_slot() -> None:
    from celery.beat import ScheduleEntry
    from celery.schedules import schedule

    at = datetime(2026, 12, 2, 15, 0, 7, tzinfo=UTC)
    entry = ScheduleEntry(name="x", task="t", schedule=schedule(5, nowfun=lambda: at))
    assert slot_of(entry) == round(datetime(2026, 12, 2, 15, 0, 5, tzinfo=UTC).timestamp() * 1000)


def test_a_crontab_slot_is_its_latest_minute_at_or_before_now() -> None:
    cron = crontab(minute="7", hour="1,13")
    assert last_cron_slot(cron, datetime(2026, 12, 2, 13, 20, 5, tzinfo=UTC)) == datetime(
        2026, 12, 2, 13, 7, tzinfo=UTC
    )
    assert last_cron_slot(cron, datetime(2026, 12, 2, 13, 7, 0, tzinfo=UTC)) == datetime(
        2026, 12, 2, 13, 7, tzinfo=UTC
    )
    assert last_cron_slot(cron, datetime(2026, 12, 2, 0, 30, tzinfo=UTC)) == datetime(
        2026, 12, 1, 13, 7, tzinfo=UTC
    )


def test_celery_beat_uses_the_singleton_scheduler() -> None:
    from celery.utils.imports import symbol_by_name

    from fleet.app.celery_app import make_app
    from fleet.settings import load_settings

    scheduler = symbol_by_name(make_app(load_settings()).conf.beat_scheduler)
    assert issubclass(scheduler, SingletonScheduler)
