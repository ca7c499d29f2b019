"""What the fleet has been doing: throughput, refusals, heartbeats and their peak concurrency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pymongo import DESCENDING
from pymongo.database import Database

from fleet.constants import BET_PART_REASON, HEARTBEATS, HOLDS, REFUSALS
from fleet.ledger import Enforcer
from fleet.ledger.holds import Holds
from fleet.ledger.tally import Tally
from fleet.queries.common import Doc, Model, aware, find, str_or_none
from fleet.store import reading


class Throughput(Model):
    """Accepted transitions (by kind, ``create`` included) and refusals in a recent window."""

    minutes: float
    since: datetime
    total: int
    by_kind: dict[str, int]
    refused: int


def throughput(db: Database[Doc], minutes: float, now: datetime) -> Throughput:
    """Transitions and refusals in the last ``minutes`` before ``now`` (whole minutes, from the tally)."""
    since = now - timedelta(minutes=minutes)
    tally = Tally.for_db(db)
    kinds: Counter[str] = Counter()
    for (_, _, kind), n in tally.flow_since(since, now).items():
        kinds[kind] += n
    refused = tally.refused_since(since, now)
    return Throughput(
        minutes=minutes,
        since=since,
        total=sum(kinds.values()),
        by_kind=dict(sorted(kinds.items())),
        refused=refused,
    )


class RefusalSummary(Model):
    """How many transition attempts the enforcer refused, and the latest of them."""

    total: int
    latest: list[dict[str, Any]]


def refusal_summary(db: Database[Doc], enforcer: Enforcer, limit: int) -> RefusalSummary:
    """The refusal count (from the running tally) and the ``limit`` newest refusals."""
    total = sum(Tally.for_db(db).refusal_totals().values())
    return RefusalSummary(total=total, latest=enforcer.refusals(limit=limit))


class RefusedMove(Model):
    """Refusals of one agent for one move in a recent window, and the items held back from it."""

    agent: str
    move: str
    refusals: int
    bets: int
    held: int


def refused_moves(db: Database[Doc], since: datetime) -> list[RefusedMove]:
    """Refusals per agent and attempted move since ``since`` (most refused first), with holds."""
    per: dict[tuple[str, str], Counter[str]] = {}
    for doc in find(db, REFUSALS, {"at": {"$gte": since}}, ["agent", "bet_id", "from_stage", "to_stage"]):
        move = f"{doc.get('from_stage') or '(new)'} -> {doc.get('to_stage')}"
        per.setdefault((str(doc.get("agent")), move), Counter())[str(doc.get("bet_id"))] += 1
    held: Counter[tuple[str, str]] = Counter()
    with reading(HOLDS):
        for hold in Holds(db).every():
            held[(hold.agent, f"{hold.from_stage or '(new)'} -> {hold.to_stage}")] += 1
    rows = [
        RefusedMove(
            agent=agent, move=move, refusals=sum(c.values()), bets=len(c), held=held.get((agent, move), 0)
        )
        for (agent, move), c in per.items()
    ]
    rows += [
        RefusedMove(agent=agent, move=move, refusals=0, bets=0, held=n)
        for (agent, move), n in held.items()
        if (agent, move) not in per
    ]
    return sorted(rows, key=lambda r: (-r.refusals, -r.held, r.agent, r.move))


class HeartbeatSummary(Model):
    """One heartbeat record, without its per-bet entries and trace."""

    heartbeat_id: str
    agent: str
    reason: str | None = None
    status: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    actions: dict[str, int] = {}
    protocol_version: str | None = None
    protocol_hash: str | None = None
    worker: str | None = None
    error: str | None = None


class AgentBeats(Model):
    """How many heartbeats an agent ran, and its last one."""

    agent: str
    count: int
    last: HeartbeatSummary | None = None


def heartbeat_summary(doc: Doc) -> HeartbeatSummary:
    """A heartbeat document (shape in :mod:`fleet.runtime.heartbeat`) as a summary; odd fields are dropped."""
    actions = doc.get("actions")
    clean = {str(k): v for k, v in actions.items() if isinstance(v, int)} if isinstance(actions, dict) else {}
    duration = doc.get("duration_s")
    return HeartbeatSummary(
        heartbeat_id=str(doc.get("_id")),
        agent=str(doc.get("agent")),
        reason=str_or_none(doc.get("reason")),
        status=str_or_none(doc.get("status")),
        started_at=aware(doc.get("started_at")),
        finished_at=aware(doc.get("finished_at")),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        actions=clean,
        protocol_version=str_or_none(doc.get("protocol_version")),
        protocol_hash=str_or_none(doc.get("protocol_hash")),
        worker=str_or_none(doc.get("worker")),
        error=str_or_none(doc.get("error")),
    )


def heartbeats_per_agent(db: Database[Doc], agents: Iterable[str]) -> list[AgentBeats]:
    """Per agent (in the order given): its heartbeat count and its latest heartbeat."""
    with reading(HEARTBEATS):
        groups = db[HEARTBEATS].aggregate([{"$group": {"_id": "$agent", "n": {"$sum": 1}}}])
        counts = {str(group["_id"]): int(group["n"]) for group in groups}
    return [
        AgentBeats(agent=name, count=counts.get(name, 0), last=_last_heartbeat(db, name, counts))
        for name in agents
    ]


def _last_heartbeat(db: Database[Doc], agent: str, counts: dict[str, int]) -> HeartbeatSummary | None:
    if not counts.get(agent):
        return None
    fields = {"bets": 0, "trace": 0}
    with reading(HEARTBEATS):
        doc = db[HEARTBEATS].find_one({"agent": agent}, fields, sort=[("started_at", DESCENDING)])
    return None if doc is None else heartbeat_summary(doc)


class Peak(Model):
    """The most heartbeats observed running at once, and when (from their start and finish times)."""

    peak: int
    at: datetime | None
    heartbeats: int
    since: datetime | None


def peak_concurrency(db: Database[Doc], since: datetime | None = None) -> Peak:
    """The highest number of heartbeat intervals [started_at, finished_at) that overlap.

    Bet tasks of a fanned-out heartbeat (their part records) are not heartbeats: they do
    not count, so the figure stays comparable with the schedule's computed peak.
    """
    query: Doc = {} if since is None else {"finished_at": {"$gte": since}}
    intervals = [
        (start, end)
        for doc in find(db, HEARTBEATS, query, ["started_at", "finished_at", "reason"])
        if doc.get("reason") != BET_PART_REASON
        and (start := aware(doc.get("started_at")))
        and (end := aware(doc.get("finished_at")))
    ]
    peak, at = overlap_peak(intervals)
    return Peak(peak=peak, at=at, heartbeats=len(intervals), since=since)


#: A point in time: a datetime, or seconds into a fleet day.
Instant = TypeVar("Instant", datetime, float)


def overlap_peak(intervals: Iterable[tuple[Instant, Instant]]) -> tuple[int, Instant | None]:
    """Most half-open intervals covering one instant, and the first such instant."""
    # At equal times an end (-1) sorts before a start (+1): back-to-back is not overlap.
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running, peak, at = 0, 0, None
    for when, step in events:
        running += step
        if running > peak:
            peak, at = running, when
    return peak, at
