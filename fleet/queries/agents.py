"""The agents and their schedule as an operator reads them."""

from __future__ import annotations

from pymongo.database import Database

from fleet.agents import usage
from fleet.app.schedule import HourLoad, all_start_minutes, load_report, peak_running
from fleet.definitions.catalogue import AgentSpec, CommandHandler, Registry, WebhookHandler
from fleet.queries.activity import HeartbeatSummary, heartbeats_per_agent
from fleet.queries.common import Doc, Model
from fleet.store import clock


class AgentRow(Model):
    """An agent's spec as an operator reads it, with its heartbeat count and last heartbeat."""

    name: str
    role: str
    group: str
    queue: str
    starts: list[str]
    polls: list[str]
    owns: list[str]
    creates: bool
    protocol_version: str
    heartbeats: int
    last: HeartbeatSummary | None
    handler_kind: str  # python, command or webhook
    spend_today_usd: float  # reported usage since midnight UTC (see fleet.agents.usage)


def agent_rows(db: Database[Doc], registry: Registry) -> list[AgentRow]:
    """Every agent of the catalogue, in catalogue order."""
    minutes = all_start_minutes(registry)
    spent = usage.spend(db, None, usage.day_start(clock(db).now()))
    beats = {row.agent: row for row in heartbeats_per_agent(db, registry.names())}
    return [
        AgentRow(
            name=spec.name,
            role=spec.role,
            group=spec.group,
            queue=spec.queue,
            starts=[f"{m // 60:02d}:{m % 60:02d}" for m in minutes[spec.name]],
            polls=list(spec.polls),
            owns=[f"{a} -> {b}" for a, b in spec.owns],
            creates=spec.creates,
            protocol_version=spec.protocol_version,
            heartbeats=beats[spec.name].count,
            last=beats[spec.name].last,
            handler_kind=handler_kind(spec),
            spend_today_usd=round(spent.get(spec.name, 0.0), 4),
        )
        for spec in registry
    ]


def handler_kind(spec: AgentSpec) -> str:
    """How the agent runs: a Python function in the worker, a command line or a webhook."""
    if isinstance(spec.handler, CommandHandler):
        return "command"
    return "webhook" if isinstance(spec.handler, WebhookHandler) else "python"


class HourRow(Model):
    """Load in one hour of the day (see :class:`fleet.app.schedule.HourLoad`)."""

    hour: int
    starts: int
    busiest_minute: int
    peak_running: int


class ScheduleReport(Model):
    """Per-hour load of the staggered (or, ``naive``, fixed-interval) schedule, and both peaks."""

    naive: bool
    agents: int
    hours: list[HourRow]
    peak_running: int
    naive_peak_running: int


def schedule_report(registry: Registry, naive: bool = False) -> ScheduleReport:
    """The schedule's load per hour; the two peaks compare staggered with fixed intervals."""
    staggered, fixed = load_report(registry), load_report(registry, naive=True)
    shown = fixed if naive else staggered
    return ScheduleReport(
        naive=naive,
        agents=len(registry),
        hours=[_hour_row(h) for h in shown],
        peak_running=peak_running(staggered),
        naive_peak_running=peak_running(fixed),
    )


def _hour_row(load: HourLoad) -> HourRow:
    return HourRow(
        hour=load.hour,
        starts=load.starts,
        busiest_minute=load.max_same_minute,
        peak_running=load.peak_running,
    )
