"""The console's one adapter to fleet's read side (and its two operator actions).

Every page and ``/metrics`` get their figures from here, and this is the only
web module that imports :mod:`fleet.queries`, :mod:`fleet.queries.figures`, the board,
the audits and the ledger: the web layer holds no store query of its own, and a
change in the query modules is absorbed in this one file. The two writes an
operator can make (send an ad-hoc heartbeat, close a board task) go through the
same calls as ``fleet trigger`` and ``fleet board close``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from pymongo.database import Database

from fleet import queries as report
from fleet.app.dispatch import send
from fleet.app.routing import queue_names, route_task
from fleet.app.schedule import all_start_minutes, longest_gap_minutes
from fleet.audit import Finding, FindingKind
from fleet.board import Board, Task
from fleet.constants import HEARTBEAT_TASK, OPERATOR
from fleet.definitions.catalogue import Registry
from fleet.definitions.protocols import load_protocols
from fleet.errors import ProtocolError
from fleet.ledger import Enforcer
from fleet.mcp.rejections import REJECTED_WINDOW, RejectedToken, rejected_tokens
from fleet.queries import figures
from fleet.runtime.locks import held_locks
from fleet.settings import Settings
from fleet.store import Document

#: The window of the "flow" columns and of the headline throughput.
FLOW_WINDOW = timedelta(hours=1)
#: Most rows a list page shows.
MAX_ROWS = 500
#: Seconds the CEO's audits (the costliest read: every unfinished bet with its claims, failures
#: and heartbeats) are shared by every page refresh and scrape of one console process.
AUDIT_TTL_S = 10.0


@dataclass(frozen=True)
class Sources:
    """What the console reads: settings, definitions, the store and the broker's Redis."""

    settings: Settings
    registry: Registry
    db: Database[Document]
    redis: redis.Redis
    cache: dict[str, tuple[float, Any]] = field(default_factory=dict, compare=False)

    @property
    def enforcer(self) -> Enforcer:
        return Enforcer(self.db, self.registry.pipeline)

    @property
    def board(self) -> Board:
        return Board(self.db)


# --- audits (shared by several pages) ---------------------------------------------------------


@dataclass(frozen=True)
class Audits:
    """The CEO's audits now and each stage's SLA in hours (protocol overrides applied).

    ``error`` when the protocols file is invalid: then no findings, and the pipeline's own SLAs.
    """

    sla_hours: dict[str, float]
    drift: list[Finding] = field(default_factory=list)
    stranded: list[Finding] = field(default_factory=list)
    loops: list[Finding] = field(default_factory=list)
    error: str | None = None

    def past_sla(self) -> Counter[str]:
        """Bets past their stage's SLA, per stage."""
        return Counter(str(f.detail.get("stage")) for f in self.stranded if f.kind == FindingKind.PAST_SLA)

    def drift_by_agent(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for finding in self.drift:
            found.setdefault(finding.agent, []).append(finding.title)
        return found


def audits(src: Sources, now: datetime) -> Audits:
    """The audits as of at most :data:`AUDIT_TTL_S` ago (two requests at once may both compute them)."""
    hit = src.cache.get("audits")
    if hit is not None and time.monotonic() - hit[0] < AUDIT_TTL_S:
        cached: Audits = hit[1]
        return cached
    found = _audits(src, now)
    src.cache["audits"] = (time.monotonic(), found)
    return found


def _audits(src: Sources, now: datetime) -> Audits:
    pipeline = src.registry.pipeline
    try:
        loaded = load_protocols(src.settings.protocols_dir)
    except ProtocolError as exc:
        own = {s.name: s.sla_hours for s in pipeline.stages if s.sla_hours and not s.terminal}
        return Audits(sla_hours=own, error=str(exc))
    slas = {s.name: loaded.protocols.effective_sla(pipeline, s.name) for s in pipeline.stages}
    found = report.audit_report(src.db, src.registry, loaded, now)
    return Audits(
        sla_hours={name: sla.total_seconds() / 3600 for name, sla in slas.items() if sla is not None},
        drift=found.drift,
        stranded=found.stranded,
        loops=found.loops,
    )


# --- the pipeline page ------------------------------------------------------------------------


@dataclass(frozen=True)
class StageRow:
    """One stage as the pipeline page shows it."""

    name: str
    terminal: bool
    known: bool
    count: int
    oldest_age_s: float | None
    sla_hours: float | None
    past_sla: int
    entered: int
    left: int


@dataclass(frozen=True)
class PipelineView:
    at: datetime
    name: str
    stages: list[StageRow]
    bets: int
    transitions_last_hour: int
    refused_last_hour: int
    refusals: report.RefusalSummary
    refused_moves: list[report.RefusedMove]
    rejected_tokens: list[RejectedToken]
    open_tasks: int
    audit_error: str | None


def pipeline_view(src: Sources, now: datetime, found: Audits | None = None) -> PipelineView:
    """Every stage in pipeline order (strays after) with counts, ages, SLA breaches and last-hour flow."""
    pipeline = src.registry.pipeline
    found = found or audits(src, now)
    breaches = found.past_sla()
    oldest = figures.oldest_per_stage(src.db)
    flow = figures.flow_per_stage(src.db, now - FLOW_WINDOW)
    rows = [
        StageRow(
            name=row.stage,
            terminal=row.terminal,
            known=row.known,
            count=row.count,
            oldest_age_s=(now - oldest[row.stage]).total_seconds() if row.stage in oldest else None,
            sla_hours=found.sla_hours.get(row.stage),
            past_sla=breaches.get(row.stage, 0),
            entered=flow.per_stage.get(row.stage, figures.Flow()).entered,
            left=flow.per_stage.get(row.stage, figures.Flow()).left,
        )
        for row in report.bets_per_stage(src.db, pipeline)
    ]
    return PipelineView(
        at=now,
        name=pipeline.name,
        stages=rows,
        bets=sum(r.count for r in rows),
        transitions_last_hour=flow.transitions,
        refused_last_hour=flow.refused,
        refusals=report.refusal_summary(src.db, src.enforcer, 5),
        refused_moves=report.refused_moves(src.db, now - FLOW_WINDOW),
        rejected_tokens=rejected_tokens(src.db, now - REJECTED_WINDOW),
        open_tasks=len(src.board.open_tasks()),
        audit_error=found.error,
    )


# --- bets -------------------------------------------------------------------------------------


def bets_view(src: Sources, stage: str | None, limit: int) -> tuple[list[report.BetRow], int]:
    """Bets (at ``stage``), most recently moved first, and how many there are in all."""
    return (
        report.list_bets(src.db, src.registry.pipeline, stage, limit),
        report.count_bets(src.db, src.registry.pipeline, stage),
    )


@dataclass(frozen=True)
class BetView:
    timeline: report.BetTimeline
    claims: list[dict[str, Any]]
    failures: list[dict[str, Any]]


def bet_view(src: Sources, bet_id: str) -> BetView:
    """One bet's timeline, claims, failures and refusals; :class:`~fleet.errors.UnknownBet` if none."""
    return BetView(
        timeline=report.bet_timeline(src.db, src.enforcer, bet_id),
        claims=figures.bet_claims(src.db, bet_id),
        failures=figures.bet_failures(src.db, bet_id),
    )


# --- agents -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentView:
    row: report.AgentRow
    failures: int
    lock_ttl_s: float | None
    drift: list[str]


def agents_view(src: Sources, now: datetime) -> tuple[list[AgentView], str | None]:
    """Every agent with its failures, lock state and drift findings; and the audit's error, if any."""
    rows = report.agent_rows(src.db, src.registry)
    failures = figures.failures_per_agent(src.db)
    locks = held_locks(src.redis, [row.name for row in rows])
    found = audits(src, now)
    drift = found.drift_by_agent()
    views = [AgentView(row, failures[row.name], locks.get(row.name), drift.get(row.name, [])) for row in rows]
    return views, found.error


def trigger(src: Sources, agent: str) -> tuple[str, str]:
    """Send an ad-hoc heartbeat to the agent's queue (as ``fleet trigger``); (task id, queue)."""
    spec = src.registry.require(agent)
    kwargs = {"reason": "adhoc", "debug": False}
    queue = str(route_task(HEARTBEAT_TASK, [spec.name], kwargs, {})["queue"])
    return send(HEARTBEAT_TASK, [spec.name], kwargs), queue


# --- the board ------------------------------------------------------------------------------------


def open_tasks(src: Sources) -> list[Task]:
    """Open board tasks, oldest first."""
    return report.board_tasks(src.db, src.board, include_closed=False, limit=MAX_ROWS)


def close_task(src: Sources, task_id: str, reason: str) -> Task:
    """Close one board task as the operator (as ``fleet board close``)."""
    return src.board.close(task_id, by=OPERATOR, reason=reason)


# --- the schedule ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleView:
    computed: report.ScheduleReport
    observed: list[figures.ObservedHour]
    observed_peak: int
    day_seconds: float


def schedule_view(src: Sources, now: datetime) -> ScheduleView:
    """The computed per-hour load beside what the last (fleet) day of heartbeat records shows."""
    day = src.settings.day_seconds
    observed = figures.observed_per_hour(src.db, day, now - timedelta(seconds=day))
    return ScheduleView(
        computed=report.schedule_report(src.registry),
        observed=observed,
        observed_peak=max((h.peak_running for h in observed), default=0),
        day_seconds=day,
    )


# --- /metrics ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything ``/metrics`` exposes, read from the shared state at scrape time."""

    at: datetime
    stages: list[StageRow]
    sla_s: dict[str, float]
    transitions: Counter[figures.EdgeKey]
    refusals: Counter[tuple[str, str]]
    heartbeats: figures.HeartbeatFigures
    interval_s: dict[str, float]
    open_tasks: Counter[str]
    drift: int | None
    stranded: Counter[str] | None
    loops: int | None
    claim_takeovers: int
    queues: dict[str, int]


def metrics_snapshot(src: Sources) -> MetricsSnapshot:
    now = datetime.now(UTC)
    found = audits(src, now)
    view = pipeline_view(src, now, found)
    day_share = src.settings.day_seconds / 86400
    return MetricsSnapshot(
        at=now,
        stages=view.stages,
        sla_s={stage: hours * 3600 for stage, hours in found.sla_hours.items()},
        transitions=figures.transition_totals(src.db),
        refusals=figures.refusal_totals(src.db),
        heartbeats=figures.heartbeat_figures(src.db),
        interval_s={
            name: longest_gap_minutes(minutes) * 60 * day_share
            for name, minutes in all_start_minutes(src.registry).items()
        },
        open_tasks=Counter(str(task.origin) for task in src.board.open_tasks()),
        drift=None if found.error else len(found.drift),
        stranded=None if found.error else Counter(str(f.kind) for f in found.stranded),
        loops=None if found.error else len(found.loops),
        claim_takeovers=figures.claim_takeovers(src.db),
        queues=report.queue_depths(src.settings.broker_url, queue_names(src.registry)),
    )
