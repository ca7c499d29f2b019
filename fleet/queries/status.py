"""The status page, the board listing and the audits as of now: reads only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pymongo import DESCENDING
from pymongo.database import Database

from fleet import audit
from fleet.agents import usage
from fleet.app.routing import queue_names
from fleet.board import Board, Task
from fleet.constants import TASKS
from fleet.definitions.catalogue import Registry
from fleet.definitions.protocols import LoadedProtocols, load_protocols
from fleet.errors import ProtocolError
from fleet.ledger import Enforcer
from fleet.mcp.rejections import REJECTED_WINDOW, RejectedToken, rejected_tokens
from fleet.queries.activity import (
    Peak,
    RefusalSummary,
    RefusedMove,
    Throughput,
    peak_concurrency,
    refusal_summary,
    refused_moves,
    throughput,
)
from fleet.queries.bets import StageCount, bets_per_stage
from fleet.queries.common import Doc, Model
from fleet.queries.queues import queue_depths
from fleet.runtime.handoff import HANDOFF_WINDOW_H, Handoff, handoffs
from fleet.store import reading

#: How far back ``fleet status`` looks for the peak of concurrent heartbeats.
PEAK_WINDOW = timedelta(hours=24)
#: How far back ``fleet status`` counts refusals per agent and move.
REFUSED_MOVES_WINDOW = timedelta(hours=1)
#: How many of the newest refusals ``fleet status`` lists.
LATEST_REFUSALS = 5


def board_tasks(db: Database[Doc], board: Board, include_closed: bool, limit: int) -> list[Task]:
    """Open tasks (oldest first); with ``include_closed``, the ``limit`` newest tasks of any status."""
    if not include_closed:
        return board.open_tasks()[:limit]
    with reading(TASKS):
        ids = [doc["_id"] for doc in db[TASKS].find({}, ["_id"]).sort("created_at", DESCENDING).limit(limit)]
    return [board.get(str(task_id)) for task_id in ids]


class AuditReport(Model):
    """Both audits (drift and stranded) as of now."""

    protocol_version: str
    protocol_hash: str
    drift: list[audit.Finding]
    stranded: list[audit.Finding]
    loops: list[audit.Finding] = []


def audit_report(
    db: Database[Doc], registry: Registry, loaded: LoadedProtocols, now: datetime
) -> AuditReport:
    """Drift and stranded findings; reads only (filing is :func:`fleet.audit.file_findings`)."""
    return AuditReport(
        protocol_version=loaded.version,
        protocol_hash=loaded.hash,
        drift=audit.drift_findings(registry, loaded, db, now),
        stranded=audit.stranded_findings(registry, loaded, db, now),
        loops=audit.refusal_loop_findings(registry, loaded, db, now),
    )


class Status(Model):
    """Everything ``fleet status`` shows."""

    at: datetime
    pipeline: str
    bets: int
    stages: list[StageCount]
    throughput: Throughput
    refusals: RefusalSummary
    refused_moves: list[RefusedMove] = []
    drift: int | None
    stranded: int | None
    audit_error: str | None
    open_tasks: int
    queues: dict[str, int]
    peak: Peak
    handoffs: list[Handoff] = []
    #: Reported usage cost per agent since midnight UTC (agents that reported any).
    spend_today: dict[str, float] = {}
    #: MCP calls refused for a bad token (last 24 h) per claimed name and source: someone
    #: trying to be that agent, not the agent's own refusals.
    rejected_tokens: list[RejectedToken] = []


def status_report(
    db: Database[Doc], broker_url: str, registry: Registry, protocols_dir: Path, minutes: float
) -> Status:
    """One snapshot of the fleet; an invalid protocols file leaves the audit counts empty."""
    now = datetime.now(UTC)
    stages = bets_per_stage(db, registry.pipeline)
    drift, stranded, error = _audit_counts(db, registry, protocols_dir, now)
    refusals = refusal_summary(db, Enforcer(db, registry.pipeline), LATEST_REFUSALS)
    return Status(
        at=now,
        pipeline=registry.pipeline.name,
        bets=sum(s.count for s in stages),
        stages=stages,
        throughput=throughput(db, minutes, now),
        refusals=refusals,
        refused_moves=refused_moves(db, now - REFUSED_MOVES_WINDOW),
        spend_today={a: round(c, 4) for a, c in usage.spend(db, None, usage.day_start(now)).items()},
        drift=drift,
        stranded=stranded,
        audit_error=error,
        open_tasks=len(Board(db).open_tasks()),
        queues=queue_depths(broker_url, queue_names(registry)),
        peak=peak_concurrency(db, now - PEAK_WINDOW),
        handoffs=handoffs(db, now - timedelta(hours=HANDOFF_WINDOW_H)),
        rejected_tokens=rejected_tokens(db, now - REJECTED_WINDOW),
    )


def _audit_counts(
    db: Database[Doc], registry: Registry, protocols_dir: Path, now: datetime
) -> tuple[int | None, int | None, str | None]:
    try:
        loaded = load_protocols(protocols_dir)
    except ProtocolError as exc:
        return None, None, str(exc)
    found = audit_report(db, registry, loaded, now)
    return len(found.drift), len(found.stranded), None
