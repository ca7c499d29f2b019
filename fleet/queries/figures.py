"""Aggregate figures over the shared state: stage ages and flow, totals by edge, agent and outcome.

The read side of the web console and of ``/metrics`` (the per-bet and per-agent
questions stay in :mod:`fleet.queries`). Every function reads the store and
returns plain values; none writes. FerretDB v1's ``$group`` has only ``$sum`` and
``$count``, so minimums and multi-key counts are computed here from projected
fields: one pass over the collection per figure, fine for the size a retention
window keeps. A store that cannot be reached raises
:class:`~fleet.errors.LedgerUnavailable`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.database import Database

from fleet.constants import BETS, CLAIMS, FAILURES, HEARTBEATS
from fleet.ledger.records import CREATE_KIND
from fleet.ledger.tally import Tally
from fleet.queries.activity import overlap_peak
from fleet.queries.common import aware, find
from fleet.store import reading

Doc = dict[str, Any]


# --- stages -----------------------------------------------------------------------------


def oldest_per_stage(db: Database[Doc]) -> dict[str, datetime]:
    """Per stage, when its longest-waiting bet arrived there (its projection's ``updated_at``)."""
    oldest: dict[str, datetime] = {}
    for doc in find(db, BETS, {}, ["stage", "updated_at"]):
        stage, at = doc.get("stage"), aware(doc.get("updated_at"))
        if isinstance(stage, str) and at is not None and (stage not in oldest or at < oldest[stage]):
            oldest[stage] = at
    return oldest


@dataclass(frozen=True)
class Flow:
    """Bets that entered and left one stage in a window."""

    entered: int = 0
    left: int = 0


@dataclass(frozen=True)
class RecentFlow:
    """Accepted transitions since a moment: per stage in and out, and in all (every one enters a stage)."""

    per_stage: dict[str, Flow]
    transitions: int
    refused: int


def flow_per_stage(db: Database[Doc], since: datetime) -> RecentFlow:
    """Per stage, accepted transitions into and out of it since ``since`` (creations enter); refusals.

    From the running tally's per-minute counts: the window is rounded out to whole minutes.
    """
    entered: Counter[str] = Counter()
    left: Counter[str] = Counter()
    tally, now = Tally.for_db(db), datetime.now(UTC)
    for (source, dest, _), n in tally.flow_since(since, now).items():
        entered[dest] += n
        if source:
            left[source] += n
    refused = tally.refused_since(since, now)
    per_stage = {stage: Flow(entered[stage], left[stage]) for stage in entered.keys() | left.keys()}
    return RecentFlow(per_stage, sum(entered.values()), refused)


# --- totals for /metrics ----------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeKey:
    """One edge of the handoff map as taken by one agent (``source`` is ``""`` for a creation)."""

    source: str
    dest: str
    agent: str
    kind: str


def _group(db: Database[Doc], collection: str, fields: list[str]) -> list[tuple[dict[str, Any], int]]:
    """Documents counted by the values of ``fields`` (a ``$group`` on a compound key: FerretDB has it)."""
    stage = {"$group": {"_id": {name: f"${name}" for name in fields}, "n": {"$sum": 1}}}
    with reading(collection):
        groups = list(db[collection].aggregate([stage]))
    return [(group["_id"] if isinstance(group["_id"], dict) else {}, int(group["n"])) for group in groups]


def transition_totals(db: Database[Doc]) -> Counter[EdgeKey]:
    """Every accepted transition ever recorded, by edge, agent and kind, from the running tally."""
    totals: Counter[EdgeKey] = Counter()
    for edge, n in Tally.for_db(db).edge_totals().items():
        totals[EdgeKey(edge.source, edge.dest, edge.agent, edge.kind or CREATE_KIND)] += n
    return totals


def refusal_totals(db: Database[Doc]) -> Counter[tuple[str, str]]:
    """Refusals by (agent, reason), counted as they were stored (pruning does not lower them)."""
    return Tally.for_db(db).refusal_totals()


@dataclass(frozen=True)
class HeartbeatFigures:
    """Stored heartbeats: counts by (agent, status), durations, and each agent's latest start."""

    by_outcome: Counter[tuple[str, str]]
    durations_s: list[float]
    last_started: dict[str, datetime]


def heartbeat_figures(db: Database[Doc]) -> HeartbeatFigures:
    """One pass over the heartbeat records (their per-bet entries and traces are not read)."""
    by_outcome: Counter[tuple[str, str]] = Counter()
    durations: list[float] = []
    last: dict[str, datetime] = {}
    for doc in find(db, HEARTBEATS, {}, ["agent", "status", "duration_s", "started_at"]):
        agent = str(doc.get("agent"))
        by_outcome[(agent, str(doc.get("status")))] += 1
        duration = doc.get("duration_s")
        if isinstance(duration, int | float):
            durations.append(float(duration))
        started = aware(doc.get("started_at"))
        if started is not None and (agent not in last or started > last[agent]):
            last[agent] = started
    return HeartbeatFigures(by_outcome, durations, last)


def claim_takeovers(db: Database[Doc]) -> int:
    """Claims that took over an expired lease (every claim after a bet's first at its seq)."""
    with reading(CLAIMS):
        return int(db[CLAIMS].count_documents({"n": {"$gt": 0}}))


def failures_per_agent(db: Database[Doc]) -> Counter[str]:
    """Failed attempts on bets (external calls that kept failing), by agent."""
    return Counter(str(doc.get("agent")) for doc in find(db, FAILURES, {}, ["agent"]))


# --- one bet ------------------------------------------------------------------------------------


def bet_claims(db: Database[Doc], bet_id: str) -> list[Doc]:
    """Every stored claim on the bet, oldest seq and lease first."""
    fields = ["bet_id", "seq", "n", "agent", "heartbeat_id", "claimed_at", "expires_at", "released_at"]
    docs = find(db, CLAIMS, {"bet_id": bet_id}, fields)
    return sorted(docs, key=lambda d: (_int(d.get("seq")), _int(d.get("n"))))


def bet_failures(db: Database[Doc], bet_id: str) -> list[Doc]:
    """Every recorded failed attempt on the bet, oldest first."""
    docs = find(db, FAILURES, {"bet_id": bet_id}, ["seq", "agent", "heartbeat_id", "error", "at"])
    return sorted(docs, key=lambda d: aware(d.get("at")) or datetime.min.replace(tzinfo=UTC))


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


# --- the schedule as observed ----------------------------------------------------------------------


@dataclass(frozen=True)
class ObservedHour:
    """Heartbeats that started in one hour of the fleet's day, and the most that ran at once then."""

    hour: int
    starts: int
    peak_running: int


def observed_per_hour(db: Database[Doc], day_seconds: float, since: datetime) -> list[ObservedHour]:
    """Heartbeats since ``since`` folded onto the fleet's day (``day_seconds`` long), per hour."""
    intervals = [
        (start, end)
        for doc in find(db, HEARTBEATS, {"started_at": {"$gte": since}}, ["started_at", "finished_at"])
        if (start := aware(doc.get("started_at"))) and (end := aware(doc.get("finished_at")))
    ]
    per_hour: dict[int, list[tuple[float, float]]] = {hour: [] for hour in range(24)}
    for start, end in intervals:
        at = start.timestamp() % day_seconds
        per_hour[int(at / day_seconds * 24) % 24].append((at, at + (end - start).total_seconds()))
    return [ObservedHour(hour, len(spans), overlap_peak(spans)[0]) for hour, spans in per_hour.items()]
