"""Read-side queries for operators: what the fleet is doing, from the shared state.

Used by the ``fleet`` CLI and the demo. Every function here reads the store,
Redis or the definitions and returns plain pydantic models (``--json`` dumps
them); none of them files, moves or closes anything. A store that cannot be
reached raises :class:`~fleet.errors.LedgerUnavailable`, a broker that cannot be
reached :class:`~fleet.errors.BrokerUnavailable`.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel
from pydantic import BaseModel, ConfigDict
from pymongo import DESCENDING
from pymongo.database import Database

from fleet import audit
from fleet.agents import Registry, load_registry, resolve_handler
from fleet.board import Board, Task
from fleet.constants import BETS, HEARTBEATS, HOLDS, REFUSALS, TASKS, TRANSITIONS
from fleet.errors import (
    BrokerUnavailable,
    CorruptBet,
    FleetError,
    ProtocolError,
    UnknownStage,
    first_line,
)
from fleet.handoff import HANDOFF_WINDOW_H, Handoff, handoffs
from fleet.ledger import Enforcer
from fleet.ledger.holds import Hold, Holds
from fleet.ledger.records import parse_projection
from fleet.pipeline import Pipeline, load_pipeline
from fleet.protocols import LoadedProtocols, load_protocols
from fleet.routing import queue_names
from fleet.schedule import HourLoad, all_start_minutes, load_report, peak_running
from fleet.settings import Settings, load_settings
from fleet.store import ping_mongo, ping_redis, reading

Doc = dict[str, Any]
T = TypeVar("T")

#: Store failures that mean "briefly unreachable" (as in :mod:`fleet.ledger`).

#: How far back ``fleet status`` looks for the peak of concurrent heartbeats.
PEAK_WINDOW = timedelta(hours=24)
#: How far back ``fleet status`` counts refusals per agent and move.
REFUSED_MOVES_WINDOW = timedelta(hours=1)
#: How many of the newest refusals ``fleet status`` lists.
LATEST_REFUSALS = 5
#: Who an operator's actions are recorded as (board closes, filed audit tasks, seeded bets).
OPERATOR = "operator"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- store access ------------------------------------------------------------------


def _find(db: Database[Doc], collection: str, query: Doc, fields: list[str] | None = None) -> list[Doc]:
    with reading(collection):
        return list(db[collection].find(query, fields))


def _aware(value: object) -> datetime | None:
    """A stored date as an aware UTC datetime; None if it is not a date."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- bets ---------------------------------------------------------------------------


class StageCount(_Model):
    """How many bets sit at one stage (``known=False``: the pipeline lacks the stage)."""

    stage: str
    count: int
    terminal: bool = False
    known: bool = True


class BetRow(_Model):
    """One bet as listed; ``problem`` is set when its projection does not parse."""

    bet_id: str
    stage: str | None = None
    seq: int | None = None
    created_by: str | None = None
    updated_at: datetime | None = None
    fields: dict[str, Any] = {}
    problem: str | None = None


def require_stage(pipeline: Pipeline, stage: str) -> str:
    """``stage`` if the pipeline has it, else :class:`UnknownStage`."""
    if stage not in pipeline.stage_map:
        raise UnknownStage(stage, pipeline.stage_map)
    return stage


def bets_per_stage(db: Database[Doc], pipeline: Pipeline) -> list[StageCount]:
    """Bets per stage from the projection: every pipeline stage in order (zeros too), then strays."""
    with reading(BETS):
        groups = db[BETS].aggregate([{"$group": {"_id": "$stage", "n": {"$sum": 1}}}])
        counts = {str(group["_id"]): int(group["n"]) for group in groups}
    rows = [
        StageCount(stage=s.name, count=counts.pop(s.name, 0), terminal=s.terminal) for s in pipeline.stages
    ]
    return rows + [StageCount(stage=name, count=n, known=False) for name, n in sorted(counts.items())]


def list_bets(db: Database[Doc], pipeline: Pipeline, stage: str | None, limit: int) -> list[BetRow]:
    """Up to ``limit`` bets (of ``stage``, if given), most recently moved first."""
    query: Doc = {} if stage is None else {"stage": require_stage(pipeline, stage)}
    with reading(BETS):
        docs = list(db[BETS].find(query).sort([("updated_at", DESCENDING), ("_id", 1)]).limit(limit))
    return [_bet_row(doc) for doc in docs]


def count_bets(db: Database[Doc], pipeline: Pipeline, stage: str | None) -> int:
    """How many bets there are (at ``stage``, if given)."""
    query: Doc = {} if stage is None else {"stage": require_stage(pipeline, stage)}
    with reading(BETS):
        return db[BETS].count_documents(query)


def _bet_row(doc: Doc) -> BetRow:
    try:
        bet = parse_projection(doc)
    except CorruptBet as exc:
        return BetRow(bet_id=str(doc.get("_id")), problem=exc.problem)
    return BetRow(
        bet_id=bet.bet_id,
        stage=bet.stage,
        seq=bet.seq,
        created_by=bet.created_by,
        updated_at=bet.updated_at,
        fields=bet.fields,
    )


# --- throughput and refusals -----------------------------------------------------------


class Throughput(_Model):
    """Accepted transitions (by kind, ``create`` included) and refusals in a recent window."""

    minutes: float
    since: datetime
    total: int
    by_kind: dict[str, int]
    refused: int


def throughput(db: Database[Doc], minutes: float, now: datetime) -> Throughput:
    """Transitions and refusals in the last ``minutes`` before ``now``."""
    since = now - timedelta(minutes=minutes)
    kinds = Counter(str(doc.get("kind")) for doc in _find(db, TRANSITIONS, {"at": {"$gte": since}}, ["kind"]))
    with reading(REFUSALS):
        refused = db[REFUSALS].count_documents({"at": {"$gte": since}})
    return Throughput(
        minutes=minutes,
        since=since,
        total=sum(kinds.values()),
        by_kind=dict(sorted(kinds.items())),
        refused=refused,
    )


class RefusalSummary(_Model):
    """How many transition attempts the enforcer refused, and the latest of them."""

    total: int
    latest: list[dict[str, Any]]


def refusal_summary(db: Database[Doc], enforcer: Enforcer, limit: int) -> RefusalSummary:
    """The refusal count and the ``limit`` newest refusals."""
    with reading(REFUSALS):
        total = db[REFUSALS].count_documents({})
    return RefusalSummary(total=total, latest=enforcer.refusals(limit=limit))


class RefusedMove(_Model):
    """Refusals of one agent for one move in a recent window, and the items held back from it."""

    agent: str
    move: str
    refusals: int
    bets: int
    held: int


def refused_moves(db: Database[Doc], since: datetime) -> list[RefusedMove]:
    """Refusals per agent and attempted move since ``since`` (most refused first), with holds."""
    per: dict[tuple[str, str], Counter[str]] = {}
    for doc in _find(db, REFUSALS, {"at": {"$gte": since}}, ["agent", "bet_id", "from_stage", "to_stage"]):
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


# --- heartbeats -------------------------------------------------------------------------


class HeartbeatSummary(_Model):
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


class AgentBeats(_Model):
    """How many heartbeats an agent ran, and its last one."""

    agent: str
    count: int
    last: HeartbeatSummary | None = None


def heartbeat_summary(doc: Doc) -> HeartbeatSummary:
    """A heartbeat document (shape in :mod:`fleet.heartbeat`) as a summary; odd fields are dropped."""
    actions = doc.get("actions")
    clean = {str(k): v for k, v in actions.items() if isinstance(v, int)} if isinstance(actions, dict) else {}
    duration = doc.get("duration_s")
    return HeartbeatSummary(
        heartbeat_id=str(doc.get("_id")),
        agent=str(doc.get("agent")),
        reason=_str_or_none(doc.get("reason")),
        status=_str_or_none(doc.get("status")),
        started_at=_aware(doc.get("started_at")),
        finished_at=_aware(doc.get("finished_at")),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        actions=clean,
        protocol_version=_str_or_none(doc.get("protocol_version")),
        protocol_hash=_str_or_none(doc.get("protocol_hash")),
        worker=_str_or_none(doc.get("worker")),
        error=_str_or_none(doc.get("error")),
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


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


class Peak(_Model):
    """The most heartbeats observed running at once, and when (from their start and finish times)."""

    peak: int
    at: datetime | None
    heartbeats: int
    since: datetime | None


def peak_concurrency(db: Database[Doc], since: datetime | None = None) -> Peak:
    """The highest number of heartbeat intervals [started_at, finished_at) that overlap."""
    query: Doc = {} if since is None else {"finished_at": {"$gte": since}}
    intervals = [
        (start, end)
        for doc in _find(db, HEARTBEATS, query, ["started_at", "finished_at"])
        if (start := _aware(doc.get("started_at"))) and (end := _aware(doc.get("finished_at")))
    ]
    peak, at = overlap_peak(intervals)
    return Peak(peak=peak, at=at, heartbeats=len(intervals), since=since)


def overlap_peak(intervals: Iterable[tuple[datetime, datetime]]) -> tuple[int, datetime | None]:
    """Most half-open intervals covering one instant, and the first such instant."""
    # At equal times an end (-1) sorts before a start (+1): back-to-back is not overlap.
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running, peak, at = 0, 0, None
    for when, step in events:
        running += step
        if running > peak:
            peak, at = running, when
    return peak, at


# --- queues ----------------------------------------------------------------------------


def queue_depths(client: redis.Redis, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting per queue: kombu keeps a queue as Redis lists (one per priority step)."""
    names = list(queues)
    keys = [[_priority_key(name, step) for step in PRIORITY_STEPS] for name in names]
    try:
        pipe = client.pipeline(transaction=False)
        for key in (k for per_queue in keys for k in per_queue):
            pipe.llen(key)
        sizes = iter(pipe.execute())
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"cannot read queue lengths: {first_line(exc)}") from None
    return {name: sum(int(next(sizes)) for _ in PRIORITY_STEPS) for name in names}


def _priority_key(queue: str, step: int) -> str:
    return f"{queue}{Channel.sep}{step}" if step else queue


# --- one bet's timeline ------------------------------------------------------------------


class TimelineEntry(_Model):
    """One accepted transition: who moved the bet, when, how, under which protocols."""

    seq: int
    at: datetime
    agent: str
    kind: str
    from_stage: str | None
    to_stage: str
    verdict: str
    protocol_version: str | None
    protocol_hash: str | None
    heartbeat_id: str | None
    evidence: dict[str, Any]


def _holds_of(db: Database[Doc], bet_id: str) -> list[Hold]:
    with reading(HOLDS):
        return Holds(db).of_bet(bet_id)


class BetTimeline(_Model):
    """A bet's current state (from its last record), its transitions, touches and refusals."""

    bet_id: str
    stage: str
    seq: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    fields: dict[str, Any]
    transitions: list[TimelineEntry]
    touches: list[dict[str, Any]]
    refusals: list[dict[str, Any]]
    holds: list[dict[str, Any]] = []


def bet_timeline(db: Database[Doc], enforcer: Enforcer, bet_id: str, refusals: int = 50) -> BetTimeline:
    """The bet's history; :class:`~fleet.errors.UnknownBet` if it has none. Reads only."""
    records = enforcer.history(bet_id)
    first, last = records[0], records[-1]
    touches = [
        entry for entry in audit.protocol_versions_for_bet(db, bet_id) if entry["source"] == "heartbeat"
    ]
    return BetTimeline(
        bet_id=bet_id,
        stage=last.to_stage,
        seq=last.seq,
        created_by=first.agent,
        created_at=first.at,
        updated_at=last.at,
        fields=first.fields,
        transitions=[TimelineEntry.model_validate(r.model_dump()) for r in records],
        touches=touches,
        refusals=enforcer.refusals(bet_id, refusals),
        holds=[asdict(hold) for hold in _holds_of(db, bet_id) if hold.seq == last.seq],
    )


# --- agents and the schedule -----------------------------------------------------------------


class AgentRow(_Model):
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


def agent_rows(db: Database[Doc], registry: Registry) -> list[AgentRow]:
    """Every agent of the catalogue, in catalogue order."""
    minutes = all_start_minutes(registry)
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
        )
        for spec in registry
    ]


class HourRow(_Model):
    """Load in one hour of the day (see :class:`fleet.schedule.HourLoad`)."""

    hour: int
    starts: int
    busiest_minute: int
    peak_running: int


class ScheduleReport(_Model):
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


# --- the board and the audits ------------------------------------------------------------------


def board_tasks(db: Database[Doc], board: Board, include_closed: bool, limit: int) -> list[Task]:
    """Open tasks (oldest first); with ``include_closed``, the ``limit`` newest tasks of any status."""
    if not include_closed:
        return board.open_tasks()[:limit]
    with reading(TASKS):
        ids = [doc["_id"] for doc in db[TASKS].find({}, ["_id"]).sort("created_at", DESCENDING).limit(limit)]
    return [board.get(str(task_id)) for task_id in ids]


class AuditReport(_Model):
    """The CEO's two audits as of now."""

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


# --- the status page ---------------------------------------------------------------------------


class Status(_Model):
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


def status_report(
    db: Database[Doc], client: redis.Redis, registry: Registry, protocols_dir: Path, minutes: float
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
        drift=drift,
        stranded=stranded,
        audit_error=error,
        open_tasks=len(Board(db).open_tasks()),
        queues=queue_depths(client, queue_names(registry)),
        peak=peak_concurrency(db, now - PEAK_WINDOW),
        handoffs=handoffs(db, now - timedelta(hours=HANDOFF_WINDOW_H)),
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


# --- doctor --------------------------------------------------------------------------------------


class Check(_Model):
    """One doctor check: what was checked, whether it passed, what was found, how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _attempt(name: str, fix: str, probe: Callable[[], tuple[T, str]]) -> tuple[Check, T | None]:
    """Run one check; a FleetError is a failed check naming what to fix."""
    try:
        value, detail = probe()
    except FleetError as exc:
        return Check(name=name, ok=False, detail=str(exc), fix=fix), None
    return Check(name=name, ok=True, detail=detail), value


def doctor_checks(procfile: Path) -> list[Check]:
    """Every check ``fleet doctor`` runs, in order; later checks are skipped when their input failed."""
    check, settings = _attempt(
        "settings",
        "fix the FLEET_* variable named (see fleet/settings.py)",
        lambda: (load_settings(), "every FLEET_* variable parses"),
    )
    if settings is None:
        return [check]
    return [check, *_service_checks(settings), *_definition_checks(settings, procfile)]


def _service_checks(settings: Settings) -> list[Check]:
    redis_check, _ = _attempt(
        "redis",
        "start it (fleet services up) or fix FLEET_BROKER_URL",
        lambda: (None, f"reachable, version {ping_redis(settings)}"),
    )
    mongo_check, _ = _attempt(
        "store",
        "start it (fleet services up) or fix FLEET_MONGO_URL",
        lambda: (None, f"MongoDB-wire store reachable, version {ping_mongo(settings)}"),
    )
    protocols_check, _ = _attempt(
        "protocols",
        "fix the file named, or point FLEET_PROTOCOLS_DIR at the folder holding fleet.yaml",
        lambda: _protocols(settings.protocols_dir),
    )
    return [redis_check, mongo_check, protocols_check]


def _protocols(directory: Path) -> tuple[LoadedProtocols, str]:
    loaded = load_protocols(directory)
    return loaded, f"{loaded.path}: version {loaded.version}, hash {loaded.hash}"


def _definition_checks(settings: Settings, procfile: Path) -> list[Check]:
    pipeline_check, pipeline = _attempt(
        "pipeline",
        "fix the pipeline definition (FLEET_PIPELINE)",
        lambda: _pipeline(settings.pipeline),
    )
    if pipeline is None:
        return [pipeline_check]
    catalogue_check, registry = _attempt(
        "catalogue",
        "fix the agent catalogue (FLEET_CATALOGUE) so it matches the pipeline",
        lambda: _catalogue(settings),
    )
    if registry is None:
        return [pipeline_check, catalogue_check]
    return [pipeline_check, catalogue_check, _handlers_check(registry), procfile_check(registry, procfile)]


def _pipeline(ref: str | None) -> tuple[Pipeline, str]:
    pipeline = load_pipeline(ref)
    return (
        pipeline,
        f"{pipeline.name}: {len(pipeline.stages)} stages, {len(pipeline.transitions)} transitions",
    )


def _catalogue(settings: Settings) -> tuple[Registry, str]:
    registry = load_registry(settings.catalogue, settings.pipeline)
    return registry, f"{len(registry)} agents on {len(registry.queues())} queues, every edge owned once"


def _handlers_check(registry: Registry) -> Check:
    problems = []
    for spec in registry:
        try:
            resolve_handler(spec)
        except FleetError as exc:
            problems.append(str(exc))
    if problems:
        fix = "fix the handler import paths in the agent specs"
        return Check(name="handlers", ok=False, detail="; ".join(problems), fix=fix)
    return Check(name="handlers", ok=True, detail=f"all {len(registry)} handlers import")


def procfile_check(registry: Registry, procfile: Path) -> Check:
    """Every queue of the fleet is served by a ``celery ... worker -Q`` line of the Procfile."""
    try:
        served = procfile_queues(procfile.read_text())
    except OSError as exc:
        return Check(
            name="procfile",
            ok=False,
            detail=f"cannot read {procfile}: {exc.strerror or exc}",
            fix="run from the project folder or pass --procfile",
        )
    missing = [q for q in queue_names(registry) if q not in served]
    if missing:
        return Check(
            name="procfile",
            ok=False,
            detail=f"{procfile}: no worker serves {', '.join(missing)}",
            fix="add a `celery -A fleet worker -Q <queue>` line for each",
        )
    return Check(name="procfile", ok=True, detail=f"{procfile}: every queue has a worker")


def procfile_queues(text: str) -> set[str]:
    """Queues named by ``-Q``/``--queues`` on the worker lines of a Procfile."""
    served: set[str] = set()
    for line in text.splitlines():
        _, _, command = line.partition(":")
        if line.lstrip().startswith("#") or "worker" not in command:
            continue
        served.update(_queues_of(shlex.split(command, comments=True)))
    return served


def _queues_of(tokens: list[str]) -> Iterator[str]:
    for i, token in enumerate(tokens):
        value = None
        if token in {"-Q", "--queues"} and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif token.startswith("--queues="):
            value = token.partition("=")[2]
        elif token.startswith("-Q") and len(token) > 2:
            value = token[2:]
        if value:
            yield from (q for q in value.split(",") if q)
