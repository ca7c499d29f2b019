"""Staggered schedules: offsets, the day schedule's arithmetic, and the load report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from beat_schedule import build_beat_schedule
from fleet.app.schedule import DaySchedule, agent_offsets, all_start_minutes, load_report, peak_running
from fleet.constants import HEARTBEAT_TASK
from fleet.definitions.catalogue import load_registry


def registry():
    return load_registry(None, None)


def test_agents_of_one_group_never_start_in_the_same_minute() -> None:
    reg = registry()
    starts = all_start_minutes(reg)
    for group in {s.group for s in reg}:
        minutes = [m for s in reg if s.group == group for m in starts[s.name]]
        assert len(minutes) == len(set(minutes)), group


def test_offsets_are_deterministic_whatever_the_listing_order() -> None:
    specs = list(registry())
    assert agent_offsets(specs) == agent_offsets(list(reversed(specs)))


def test_the_seed_stagger_sourcing_on_the_hour_validation_half_an_hour_later() -> None:
    reg = registry()
    starts = all_start_minutes(reg)
    scouts = [starts[s.name] for s in reg if s.group == "sourcing"]
    gates = [starts[s.name] for s in reg if s.group == "validation"]
    assert all(m // 60 in {1, 7, 13, 19} and m % 60 < 30 for ms in scouts for m in ms)
    assert all(m // 60 in {1, 7, 13, 19} and m % 60 >= 30 for ms in gates for m in ms)


def test_day_schedule_is_due_once_per_slot_in_compressed_time() -> None:
    # A "day" of 240 s with starts at 01:00 and 13:00 (real) -> seconds 10 and 130 of each day.
    sched = DaySchedule([3600, 13 * 3600], day_seconds=240)
    day_start = 240 * 1000
    assert sched.next_after(day_start) == day_start + 10
    assert sched.next_after(day_start + 10) == day_start + 130
    assert sched.next_after(day_start + 130) == day_start + 240 + 10


def test_day_schedule_is_due_after_its_slot_passed() -> None:
    sched = DaySchedule([0.0], day_seconds=60)
    now = datetime.now(UTC)
    state = sched.is_due(now - timedelta(seconds=61))
    assert state.is_due and 0 <= state.next <= 60
    assert not sched.is_due(now).is_due


def test_beat_schedule_has_one_routed_expiring_entry_per_agent() -> None:
    reg = registry()
    entries = build_beat_schedule(reg, day_seconds=120)
    assert len(entries) == len(reg)
    entry = entries["heartbeat:source_validation_gate"]
    assert entry["task"] == HEARTBEAT_TASK and entry["args"] == ("source_validation_gate",)
    assert entry["options"]["queue"] == "validation" and entry["options"]["expires"] >= 10


def test_the_staggered_peak_is_far_below_fixed_intervals() -> None:
    reg = registry()
    staggered = peak_running(load_report(reg))
    naive = peak_running(load_report(reg, naive=True))
    assert staggered < naive
    assert staggered <= 10


def test_real_time_schedules_are_crontabs_that_read_as_times() -> None:
    from celery.schedules import crontab

    entries = build_beat_schedule(registry())
    schedule = entries["heartbeat:source_validation_gate"]["schedule"]
    assert isinstance(schedule, crontab)
    minutes = all_start_minutes(registry())["source_validation_gate"]
    assert schedule.hour == {m // 60 for m in minutes} and schedule.minute == {m % 60 for m in minutes}


def test_a_compressed_day_schedule_lists_its_start_times() -> None:
    assert repr(DaySchedule([3600 + 8 * 60, 13 * 3600], day_seconds=120)) == (
        "<DaySchedule 01:08 13:00 of a 120s day>"
    )


def test_the_celery_app_builds_no_beat_schedule_only_beat_does() -> None:
    # Importing the app as `celery -A fleet` does leaves the schedule to beat's scheduler
    from fleet.celery import app

    assert not app.conf.beat_schedule
    assert app.conf.beat_scheduler == "beat_schedule:Scheduler"


def test_beats_scheduler_adds_one_entry_per_agent(tmp_path) -> None:
    from beat_schedule import Scheduler
    from fleet.celery import app

    scheduler = Scheduler(app, schedule_filename=str(tmp_path / "beat"), lazy=False)
    try:
        assert len([name for name in scheduler.schedule if name.startswith("heartbeat:")]) == len(registry())
    finally:
        scheduler.close()
        app.conf.beat_schedule = {}
