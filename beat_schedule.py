"""Celery beat's schedule, built from the agent specs: one staggered entry per agent.

Only beat builds it: the app names :class:`Scheduler` as ``beat_scheduler``, so
workers, Flower and ``celery call`` never load it. Any number of ``celery -A fleet beat``
may run: the scheduler is :class:`fleet.app.beat.SingletonScheduler`, so one sends while the
others stand by.
"""

from __future__ import annotations

from typing import Any

from fleet.app.beat import SingletonScheduler
from fleet.app.schedule import DAY, load_report, peak_running, schedules
from fleet.constants import HEARTBEAT_TASK
from fleet.definitions.catalogue import Registry

#: A scheduled heartbeat not started within this share of an hour (of the fleet's day)
#: is dropped instead of piling up behind a backlog; the next slot runs it anyway. In real
#: time (one hour) this outlives Redis' redelivery of a dead worker's heartbeat
#: (``fleet.app.celery_app.visibility_timeout``: 1,500 s for the default catalogue), so such a
#: heartbeat runs again; when it does not (compressed time), the worker that drops the
#: expired message records it as an ``expired`` heartbeat.
EXPIRES_HOURS = 1.0
#: Floor for ``expires`` in compressed-time runs, where an hour may be seconds.
MIN_EXPIRES_S = 10.0


def build_beat_schedule(registry: Registry, day_seconds: float = DAY) -> dict[str, Any]:
    """One beat entry per agent, routed by agent, under the agent's own time limits."""
    expires = max(day_seconds / 24 * EXPIRES_HOURS, MIN_EXPIRES_S)
    by_agent = schedules(registry, day_seconds)
    return {
        f"heartbeat:{spec.name}": {
            "task": HEARTBEAT_TASK,
            "schedule": by_agent[spec.name],
            "args": (spec.name,),
            "kwargs": {"reason": "scheduled"},
            "options": {
                "expires": expires,
                "queue": spec.queue,
                "soft_time_limit": spec.time_limits[0],
                "time_limit": spec.time_limits[1],
            },
        }
        for spec in registry
    }


class Scheduler(SingletonScheduler):
    """The singleton file-backed scheduler, with one entry per agent added when beat starts."""

    def setup_schedule(self) -> None:
        from fleet.definitions.catalogue import get_registry
        from fleet.settings import get_settings

        entries = build_beat_schedule(get_registry(), get_settings().day_seconds)
        # Entries configured by hand in beat_schedule win over the generated ones.
        self.app.conf.beat_schedule = {**entries, **(self.app.conf.beat_schedule or {})}
        super().setup_schedule()


def describe(registry: Registry) -> str:
    """A text table of the schedule's load per hour (``python beat_schedule.py``)."""
    report = load_report(registry)
    lines = ["hour starts busiest-minute peak-running"]
    lines += [f"{h.hour:>4} {h.starts:>6} {h.max_same_minute:>14} {h.peak_running:>12}" for h in report]
    naive = peak_running(load_report(registry, naive=True))
    lines.append(f"peak running at once: {peak_running(report)} (fixed intervals: {naive})")
    return "\n".join(lines)


if __name__ == "__main__":
    from fleet.definitions.catalogue import get_registry

    print(describe(get_registry()))
