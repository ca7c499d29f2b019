"""Read-side queries for operators: what the fleet is doing, from the shared state.

Used by the ``fleet`` CLI and the demo. Every function here reads the store, the
broker or the definitions and returns plain pydantic models (``--json`` dumps
them); none of them renders, files, moves or closes anything. A store that cannot
be reached raises :class:`~fleet.errors.LedgerUnavailable`, a broker that cannot be
reached :class:`~fleet.errors.BrokerUnavailable`.

- :mod:`~fleet.queries.bets`: bets per stage, listings, one bet's timeline;
- :mod:`~fleet.queries.activity`: throughput, refusals, heartbeats, peak concurrency;
- :mod:`~fleet.queries.agents`: agents with their last heartbeat, the schedule's load;
- :mod:`~fleet.queries.queues`: messages waiting per queue;
- :mod:`~fleet.queries.status`: the status page, the board listing, the audits as of now.
"""

from __future__ import annotations

from fleet.errors import UnknownStage
from fleet.queries.activity import (
    AgentBeats,
    HeartbeatSummary,
    Peak,
    RefusalSummary,
    RefusedMove,
    Throughput,
    heartbeat_summary,
    heartbeats_per_agent,
    overlap_peak,
    peak_concurrency,
    refusal_summary,
    refused_moves,
    throughput,
)
from fleet.queries.agents import AgentRow, HourRow, ScheduleReport, agent_rows, schedule_report
from fleet.queries.bets import (
    BetRow,
    BetTimeline,
    StageCount,
    TimelineEntry,
    bet_timeline,
    bets_per_stage,
    count_bets,
    list_bets,
    require_stage,
)
from fleet.queries.queues import queue_depths
from fleet.queries.status import (
    REFUSED_MOVES_WINDOW,
    AuditReport,
    Status,
    audit_report,
    board_tasks,
    status_report,
)

__all__ = [
    "REFUSED_MOVES_WINDOW",
    "AgentBeats",
    "AgentRow",
    "AuditReport",
    "BetRow",
    "BetTimeline",
    "HeartbeatSummary",
    "HourRow",
    "Peak",
    "RefusalSummary",
    "RefusedMove",
    "ScheduleReport",
    "StageCount",
    "Status",
    "Throughput",
    "TimelineEntry",
    "UnknownStage",
    "agent_rows",
    "audit_report",
    "bet_timeline",
    "bets_per_stage",
    "board_tasks",
    "count_bets",
    "heartbeat_summary",
    "heartbeats_per_agent",
    "list_bets",
    "overlap_peak",
    "peak_concurrency",
    "queue_depths",
    "refusal_summary",
    "refused_moves",
    "require_stage",
    "schedule_report",
    "status_report",
    "throughput",
]
