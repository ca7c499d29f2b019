"""Staggered heartbeat schedules and the load they put on the fleet.

Each agent runs at its group's hours and base minute plus a deterministic
per-agent offset, so agents of one group never start in the same minute (the
seed's thundering herd: 40 agents at once, then under 10 after staggering).
One "day" lasts ``day_seconds``: 86400 in production, e.g. 120 to replay a whole
day in two minutes; the same code computes both. In real time each agent's
schedule is a Celery ``crontab`` (it reads as times in beat's log and in Flower);
a compressed day uses :class:`DaySchedule`, whose repr lists the same times.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import BaseSchedule, crontab, schedstate

from fleet.definitions.catalogue import AgentSpec, Registry

DAY = 86400
#: Per-agent offsets spread a group's starts over this many minutes after its base minute.
STAGGER_SPREAD_MIN = 24


def agent_offsets(specs: Iterable[AgentSpec], stage_order: dict[str, int] | None = None) -> dict[str, int]:
    """Per-agent minute offsets: each group's agents spread evenly over the stagger window.

    Inside a group, agents run in pipeline order (by the earliest stage they poll),
    so a bet can pass several gates in one round; ties break on a hash of the name.
    The result is deterministic and independent of the order specs are listed in.
    """
    order = stage_order or {}

    def rank_key(spec: AgentSpec) -> tuple[int, int, str]:
        first = min((order.get(stage, len(order)) for stage in spec.polls), default=len(order))
        return (first, zlib.crc32(spec.name.encode()), spec.name)

    groups: dict[str, list[AgentSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.group, []).append(spec)
    offsets: dict[str, int] = {}
    for members in groups.values():
        for rank, spec in enumerate(sorted(members, key=rank_key)):
            offsets[spec.name] = rank * STAGGER_SPREAD_MIN // len(members)
    return offsets


def start_minutes(spec: AgentSpec, offset: int) -> list[int]:
    """Minutes of the (real) day at which the agent's heartbeats start."""
    minute = spec.schedule.minute + offset
    return sorted((hour * 60 + minute) % (24 * 60) for hour in spec.schedule.hours)


def longest_gap_minutes(minutes: list[int]) -> int:
    """The longest wait between two consecutive starts, around the day (a whole day for one start)."""
    ordered = sorted(set(minutes))
    if not ordered:
        return 24 * 60
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    return max([*gaps, ordered[0] + 24 * 60 - ordered[-1]])


def all_start_minutes(registry: Registry) -> dict[str, list[int]]:
    """Start minutes of every agent of the fleet."""
    stage_order = {stage.name: i for i, stage in enumerate(registry.pipeline.stages)}
    offsets = agent_offsets(registry, stage_order)
    return {spec.name: start_minutes(spec, offsets[spec.name]) for spec in registry}


class DaySchedule(BaseSchedule):  # type: ignore[misc]
    """A Celery schedule firing at fixed seconds of a day of ``day_seconds`` length."""

    def __init__(self, day_offsets_s: Iterable[float], day_seconds: float = DAY, **kw: Any) -> None:
        self.offsets = sorted(day_offsets_s)
        self.day_seconds = float(day_seconds)
        self.scaled = [s * self.day_seconds / DAY for s in self.offsets]
        super().__init__(**kw)

    def next_after(self, t: float) -> float:
        """The first start strictly after epoch second ``t``."""
        base = math.floor(t / self.day_seconds) * self.day_seconds
        for offset in self.scaled:
            if base + offset > t:
                return base + offset
        return base + self.day_seconds + self.scaled[0]

    def last_at_or_before(self, t: float) -> float:
        """The latest start at or before epoch second ``t`` (the slot a beat sending now serves)."""
        base = math.floor(t / self.day_seconds) * self.day_seconds
        for offset in reversed(self.scaled):
            if base + offset <= t:
                return base + offset
        return base - self.day_seconds + self.scaled[-1]

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = self.now().timestamp()
        due = self.next_after(last_run_at.timestamp()) <= now
        return schedstate(due, max(self.next_after(now) - now, 0.0))

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return timedelta(seconds=self.next_after(last_run_at.timestamp()) - self.now().timestamp())

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.offsets, self.day_seconds))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DaySchedule):
            return NotImplemented
        return (self.offsets, self.day_seconds) == (other.offsets, other.day_seconds)

    def __hash__(self) -> int:
        return hash((tuple(self.offsets), self.day_seconds))

    def __repr__(self) -> str:
        times = " ".join(_clock(s) for s in self.offsets)
        return f"<DaySchedule {times} of a {self.day_seconds:g}s day>"


def _clock(day_offset_s: float) -> str:
    """Seconds into a (real) day as ``HH:MM``."""
    minutes = int(day_offset_s // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def agent_schedule(minutes: list[int], day_seconds: float = DAY) -> BaseSchedule:
    """The schedule firing at ``minutes`` of each day: a crontab in real time, else a DaySchedule."""
    minutes_of_hour = {m % 60 for m in minutes}
    # An agent starts at one minute past several hours (start_minutes), which is one crontab.
    if day_seconds == DAY and len(minutes_of_hour) == 1:
        hours = ",".join(str(h) for h in sorted({m // 60 for m in minutes}))
        return crontab(minute=str(minutes_of_hour.pop()), hour=hours)
    return DaySchedule([m * 60 for m in minutes], day_seconds)


def schedules(registry: Registry, day_seconds: float = DAY) -> dict[str, BaseSchedule]:
    """Every agent's staggered schedule."""
    return {
        name: agent_schedule(minutes, day_seconds) for name, minutes in all_start_minutes(registry).items()
    }


# --- load report ------------------------------------------------------------------


@dataclass(frozen=True)
class HourLoad:
    """Load in one hour of the day: starts, the most starts in one minute, peak running."""

    hour: int
    starts: int
    max_same_minute: int
    peak_running: int


def _intervals(specs: Iterable[AgentSpec], minutes: dict[str, list[int]]) -> list[tuple[float, float]]:
    return [(m * 60.0, m * 60.0 + spec.expected_seconds) for spec in specs for m in minutes[spec.name]]


def _running_at(t: float, intervals: list[tuple[float, float]]) -> int:
    """Heartbeats running at second ``t`` of the day (intervals may wrap past midnight)."""
    return sum(1 for start, end in intervals if start <= t < end or start <= t + DAY < end)


def load_report(registry: Registry, naive: bool = False) -> list[HourLoad]:
    """Per hour: starts, the busiest minute, and peak concurrent heartbeats.

    ``naive=True`` computes the same for the fleet on plain fixed intervals (every
    agent at its hours, minute 0, no group offsets): the thundering herd to compare with.
    """
    specs = list(registry)
    if naive:
        minutes = {s.name: [h * 60 for h in s.schedule.hours] for s in specs}
    else:
        minutes = all_start_minutes(registry)
    intervals = _intervals(specs, minutes)
    report = []
    for hour in range(24):
        starts = [m for ms in minutes.values() for m in ms if m // 60 == hour]
        per_minute = {m: starts.count(m) for m in starts}
        times = [m * 60.0 for m in starts] or [hour * 3600.0]
        peak = max(_running_at(t, intervals) for t in times)
        report.append(HourLoad(hour, len(starts), max(per_minute.values(), default=0), peak))
    return report


def peak_running(report: Iterable[HourLoad]) -> int:
    """The highest number of heartbeats running at once over the day."""
    return max((h.peak_running for h in report), default=0)
