"""The CEO's audits: agent drift and stranded bets, as pure queries over the shared state.

Each audit reads the store (never writes) and returns :class:`Finding` objects:
what is wrong, which agent must act, and a *dedupe key* naming the condition.
:func:`file_findings` turns findings into board tasks (one per key, deduplicated
by the board) and closes the tasks whose condition is gone.

- **Drift** (:func:`drift_findings`): specs written for another protocol version
  (or for one that never existed); heartbeats that ran under other protocols than
  the current file, after the current file was first in use; specs naming stages
  or edges the pipeline no longer has; SLA overrides for stages that do not exist.
- **Refusal loops** (:func:`refusal_loop_findings`): an agent refused again and again for
  the same move, on one bet or on many, within the protocols' window; or bets held back
  from an agent for that reason (:mod:`fleet.ledger.holds`). One finding per (agent, move),
  assigned to the owner of the agent's spec.
- **Stranded bets** (:func:`stranded_findings`): bets past their stage's SLA; bets
  whose latest claim expired unreleased (its holder died); bets failing again and
  again; bets one agent keeps deferring; bets at a stage nobody polls or nothing
  leaves. Each finding names the last responsible agent and what it did.

The documents read are the shared-state contracts written by the ledger, the
claims and the heartbeat runtime (collection names in :mod:`fleet.constants`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo.database import Database

from fleet.agents import Registry, spec_fingerprint
from fleet.board import Board, Origin
from fleet.constants import BETS, CLAIMS, FAILURES, HEARTBEATS, REFUSALS, TRANSITIONS
from fleet.ledger.holds import Hold, Holds
from fleet.pipeline import Pipeline
from fleet.protocols import LoadedProtocols, Protocols, version_known
from fleet.store import reading

Doc = dict[str, Any]

#: Who must act on a finding no single agent owns when no auditing agent is named (the CLI): a person.
DEFAULT_AUDITOR = "operator"
#: Heartbeat outcomes that leave a bet where it was: repeated, they mean oscillation.
STUCK_OUTCOMES = frozenset({"deferred", "failed"})


class FindingKind(StrEnum):
    """What an audit found."""

    SPEC_VERSION_BEHIND = "spec_version_behind"
    SPEC_VERSION_UNKNOWN = "spec_version_unknown"
    STALE_PROTOCOLS = "stale_protocols"
    SPEC_UNKNOWN_STAGE = "spec_unknown_stage"
    SPEC_UNKNOWN_EDGE = "spec_unknown_edge"
    SLA_OVERRIDE_UNKNOWN_STAGE = "sla_override_unknown_stage"
    PAST_SLA = "past_sla"
    CLAIM_EXPIRED = "claim_expired"
    REPEATED_FAILURES = "repeated_failures"
    OSCILLATING = "oscillating"
    DEAD_END = "dead_end"
    REFUSAL_LOOP = "refusal_loop"


class Finding(BaseModel):
    """One problem: what it is, the agent that must act, and the key of its board task."""

    model_config = ConfigDict(frozen=True)

    kind: FindingKind
    agent: str
    dedupe_key: str
    title: str
    detail: dict[str, Any]


def file_findings(
    board: Board, findings: Iterable[Finding], origin: Origin | str, by: str
) -> tuple[int, int]:
    """File one task per finding (deduplicated) and close ``origin``'s tasks no finding names.

    Returns (tasks newly filed, tasks closed). Call it once per origin with *all*
    of that origin's findings: any open task of the origin not found is closed.
    """
    findings = list(findings)
    filed = 0
    for finding in findings:
        _, new = board.file(
            assignee=finding.agent,
            origin=origin,
            dedupe_key=finding.dedupe_key,
            title=finding.title,
            detail={"kind": str(finding.kind), **finding.detail},
            by=by,
        )
        filed += new
    closed = board.close_resolved(origin, {f.dedupe_key for f in findings}, by=by)
    return filed, len(closed)


# --- refusal loops -------------------------------------------------------------------

#: Bets named in one refusal-loop task (the rest are counted).
LOOP_BETS_SHOWN = 20


@dataclass
class _Loop:
    """Refusals of one agent for one move within the window, and the holds they caused."""

    agent: str
    from_stage: str | None
    to_stage: str
    per_bet: Counter[str] = field(default_factory=Counter)
    reason: str = ""
    held: list[str] = field(default_factory=list)


def refusal_loop_findings(
    registry: Registry,
    loaded: LoadedProtocols,
    db: Database[Doc],
    now: datetime,
    *,
    auditor: str = DEFAULT_AUDITOR,
) -> list[Finding]:
    """Agents that keep asking for a move they may not make (see the module docstring)."""
    policy = loaded.protocols.escalation
    since = now - timedelta(hours=policy.refusal_loop_window_h)
    loops: dict[tuple[str, str | None, str], _Loop] = {}
    fields = ["agent", "bet_id", "from_stage", "to_stage", "reason"]
    for doc in _find(db, REFUSALS, {"at": {"$gte": since}}, fields):
        if doc.get("reason") == "stale bet (lost race)" or not isinstance(doc.get("agent"), str):
            continue  # a lost race is not a loop
        loop = _loop_of(loops, doc["agent"], doc.get("from_stage"), str(doc.get("to_stage")))
        loop.per_bet[str(doc.get("bet_id"))] += 1
        loop.reason = str(doc.get("reason") or loop.reason)
    for hold in _standing_holds(registry, loaded, db):
        _loop_of(loops, hold.agent, hold.from_stage, hold.to_stage).held.append(hold.bet_id)
    threshold = policy.refusal_loop_threshold
    return [
        _loop_finding(registry, loop, policy.refusal_loop_window_h, auditor)
        for loop in loops.values()
        if loop.held or max(loop.per_bet.values(), default=0) > threshold or len(loop.per_bet) > threshold
    ]


def _loop_of(loops: dict[tuple[str, str | None, str], _Loop], agent: str, src: str | None, dst: str) -> _Loop:
    return loops.setdefault((agent, src, dst), _Loop(agent, src, dst))


def _standing_holds(registry: Registry, loaded: LoadedProtocols, db: Database[Doc]) -> list[Hold]:
    with reading("holds"):
        holds = Holds(db).every()
    fingerprints = {spec.name: spec_fingerprint(spec) for spec in registry}
    return [h for h in holds if h.agent in fingerprints and h.applies(fingerprints[h.agent], loaded.hash)]


def _loop_finding(registry: Registry, loop: _Loop, window_h: float, auditor: str) -> Finding:
    spec = registry.get(loop.agent)
    owner = spec.owner if spec is not None else auditor
    move = f"{loop.from_stage or '(new)'} -> {loop.to_stage}"
    allowed = [
        {"to_stage": edge.dest, "owner": edge.owner, "kind": str(edge.kind)}
        for edge in (registry.pipeline.edges_from(loop.from_stage) if loop.from_stage else [])
    ]
    own = [a["to_stage"] for a in allowed if a["owner"] == loop.agent]
    bets = sorted(set(loop.per_bet) | set(loop.held))
    refusals = sum(loop.per_bet.values())
    return Finding(
        kind=FindingKind.REFUSAL_LOOP,
        agent=owner,
        dedupe_key=f"refusal-loop:{loop.agent}:{loop.from_stage}->{loop.to_stage}",
        title=(
            f"{loop.agent} keeps trying {move}, which it may not make ({loop.reason}): "
            f"{refusals} refusal(s) on {len(bets)} item(s) in the last {window_h:g} h, "
            f"{len(loop.held)} held back"
        ),
        detail={
            "agent": loop.agent,
            "move": move,
            "reason": loop.reason,
            "refusals": refusals,
            "bets": bets[:LOOP_BETS_SHOWN],
            "bet_count": len(bets),
            "held": sorted(loop.held)[:LOOP_BETS_SHOWN],
            "allowed_moves": allowed,
            "agent_may_move_to": own,
            "fix": "fix the agent's handler or spec (held items are offered again once either changes)",
        },
    )


# --- drift ---------------------------------------------------------------------------


def drift_findings(
    registry: Registry,
    loaded: LoadedProtocols,
    db: Database[Doc],
    now: datetime,
    *,
    auditor: str = DEFAULT_AUDITOR,
) -> list[Finding]:
    """Every way agents have drifted from the shared protocols or the pipeline."""
    return [
        *_spec_version_findings(registry, loaded),
        *_stale_protocol_findings(db, loaded, now),
        *_spec_pipeline_findings(registry),
        *_sla_override_findings(registry.pipeline, loaded, auditor),
    ]


def _spec_version_findings(registry: Registry, loaded: LoadedProtocols) -> Iterator[Finding]:
    current = loaded.version
    for spec in registry:
        version = spec.protocol_version
        if version == current:
            continue
        detail = {"spec_version": version, "current_version": current, "known": loaded.known_versions}
        if version_known(loaded, version):
            yield Finding(
                kind=FindingKind.SPEC_VERSION_BEHIND,
                agent=spec.name,
                detail=detail,
                dedupe_key=f"drift:spec-version:{spec.name}:{version}:{current}",
                title=f"update the spec of {spec.name}: written for protocols {version}, "
                f"current is {current}",
            )
        else:
            yield Finding(
                kind=FindingKind.SPEC_VERSION_UNKNOWN,
                agent=spec.name,
                detail=detail,
                dedupe_key=f"drift:spec-version-unknown:{spec.name}:{version}",
                title=f"fix the spec of {spec.name}: it names protocols {version}, which does not exist "
                f"(current is {current})",
            )


def _stale_protocol_findings(db: Database[Doc], loaded: LoadedProtocols, now: datetime) -> Iterator[Finding]:
    """Heartbeats under another protocols hash, started after the current file was first used.

    Heartbeats before that moment ran under the rules of their time, which is no drift.
    """
    since = now - timedelta(hours=loaded.protocols.escalation.drift_window_h)
    fields = ["agent", "started_at", "protocol_hash", "protocol_version", "worker"]
    found = _find(db, HEARTBEATS, {"started_at": {"$gte": since}}, fields)
    beats = [(at, beat) for beat in found if (at := _when(beat, "started_at")) is not None]
    first_use = min((at for at, beat in beats if beat.get("protocol_hash") == loaded.hash), default=None)
    if first_use is None:
        return  # nobody ran under the current file yet: everyone is on the rules of their time
    groups: dict[tuple[str, str], list[Doc]] = defaultdict(list)
    for at, beat in beats:
        old_hash = beat.get("protocol_hash")
        if old_hash is not None and old_hash != loaded.hash and at >= first_use:
            groups[(str(beat.get("agent")), str(old_hash))].append(beat)
    for (agent, old_hash), group in sorted(groups.items()):
        yield _stale_protocol_finding(agent, old_hash, group, loaded)


def _stale_protocol_finding(agent: str, old_hash: str, beats: list[Doc], loaded: LoadedProtocols) -> Finding:
    last = max(beats, key=lambda b: _when(b, "started_at") or datetime.min.replace(tzinfo=UTC))
    workers = sorted({str(b.get("worker")) for b in beats})
    version = str(last.get("protocol_version"))
    return Finding(
        kind=FindingKind.STALE_PROTOCOLS,
        agent=agent,
        dedupe_key=f"drift:protocol-hash:{agent}:{old_hash}",
        title=f"{agent} ran {len(beats)} heartbeat(s) on worker(s) {', '.join(workers)} under protocols "
        f"{version} ({old_hash}), not the current {loaded.version} ({loaded.hash})",
        detail={
            "protocol_hash": old_hash,
            "protocol_version": version,
            "current_hash": loaded.hash,
            "current_version": loaded.version,
            "heartbeats": len(beats),
            "workers": workers,
            "last_heartbeat_id": str(last.get("_id")),
            "last_at": _when(last, "started_at"),
        },
    )


def _spec_pipeline_findings(registry: Registry) -> Iterator[Finding]:
    pipeline = registry.pipeline
    for spec in registry:
        for stage in spec.polls:
            known = pipeline.stage_map.get(stage)
            if known is None or known.terminal:
                why = "does not exist" if known is None else "is terminal"
                yield Finding(
                    kind=FindingKind.SPEC_UNKNOWN_STAGE,
                    agent=spec.name,
                    dedupe_key=f"drift:spec-stage:{spec.name}:{stage}",
                    title=f"fix the spec of {spec.name}: it polls stage {stage!r}, which {why} "
                    "in the pipeline",
                    detail={"stage": stage, "pipeline": pipeline.name},
                )
        for source, dest in spec.owns:
            yield from _edge_finding(pipeline, spec.name, source, dest)


def _edge_finding(pipeline: Pipeline, agent: str, source: str, dest: str) -> Iterator[Finding]:
    edge = pipeline.edge(source, dest)
    if edge is not None and edge.owner == agent:
        return
    why = "does not exist" if edge is None else f"is owned by {edge.owner}"
    yield Finding(
        kind=FindingKind.SPEC_UNKNOWN_EDGE,
        agent=agent,
        dedupe_key=f"drift:spec-edge:{agent}:{source}->{dest}",
        title=f"fix the spec of {agent}: it owns {source} -> {dest}, which {why} in the pipeline",
        detail={
            "from_stage": source,
            "to_stage": dest,
            "owner": edge.owner if edge else None,
            "pipeline": pipeline.name,
        },
    )


def _sla_override_findings(pipeline: Pipeline, loaded: LoadedProtocols, auditor: str) -> Iterator[Finding]:
    for stage in loaded.protocols.unknown_sla_stages(pipeline):
        yield Finding(
            kind=FindingKind.SLA_OVERRIDE_UNKNOWN_STAGE,
            agent=auditor,
            dedupe_key=f"drift:sla-override:{stage}",
            title=f"fix the protocols: stage_sla_hours names {stage!r}, which is no open stage "
            f"of pipeline {pipeline.name}",
            detail={"stage": stage, "protocols": str(loaded.path), "pipeline": pipeline.name},
        )


# --- stranded bets -------------------------------------------------------------------


@dataclass
class BetView:
    """A bet that is not finished, with what the shared state says about it."""

    bet_id: str
    stage: str
    seq: int
    updated_at: datetime
    last_transition: Doc | None = None
    claims: list[Doc] = field(default_factory=list)
    failures: list[Doc] = field(default_factory=list)
    touches: list[Doc] = field(default_factory=list)  # heartbeat bet entries, with agent and at

    @property
    def current_touches(self) -> list[Doc]:
        return [t for t in self.touches if t.get("seq") == self.seq]

    @property
    def last_touch(self) -> Doc | None:
        return max(self.touches, key=lambda t: t["at"], default=None)


@dataclass(frozen=True)
class _Audit:
    registry: Registry
    protocols: Protocols
    now: datetime
    auditor: str

    @property
    def pipeline(self) -> Pipeline:
        return self.registry.pipeline

    def pollers(self, stage: str) -> list[str]:
        return sorted(spec.name for spec in self.registry if stage in spec.polls)


def stranded_findings(
    registry: Registry,
    loaded: LoadedProtocols,
    db: Database[Doc],
    now: datetime,
    *,
    auditor: str = DEFAULT_AUDITOR,
) -> list[Finding]:
    """Every unfinished bet that is stuck, with the agent that must act and the last one that did."""
    audit = _Audit(registry, loaded.protocols, now, auditor)
    views = bet_views(db, registry.pipeline)
    return [finding for view in views for check in _CHECKS for finding in check(view, audit)]


#: Slack for documents dated by an older fleet with worker clocks (today: the store's clock).
ARRIVAL_MARGIN = timedelta(minutes=5)


def bet_views(db: Database[Doc], pipeline: Pipeline) -> list[BetView]:
    """Unfinished bets (not at a terminal stage) with their records, claims, failures and heartbeats.

    A bet whose projection lags its records (a newer transition exists) is left out:
    it moved, and the next audit sees it where it is.
    """
    terminal = [s.name for s in pipeline.stages if s.terminal]
    views = {v.bet_id: v for v in map(_view, _find(db, BETS, {"stage": {"$nin": terminal}})) if v}
    ids = list(views)
    if not ids:
        return []
    record_ids = [f"{v.bet_id}:{n}" for v in views.values() for n in (v.seq, v.seq + 1)]
    for record in _find(db, TRANSITIONS, {"_id": {"$in": record_ids}}):
        view = views.get(str(record.get("bet_id")))
        if view is not None and record.get("seq") == view.seq:
            view.last_transition = record
        elif view is not None:
            del views[view.bet_id]  # moved on: the projection lags
    if not views:
        return []
    # Only what happened since the oldest of these bets reached its stage matters (claims,
    # failures and touches at an older seq do not), so the reads stay within that window.
    since = min(v.updated_at for v in views.values()) - ARRIVAL_MARGIN
    claims = _find(db, CLAIMS, {"bet_id": {"$in": ids}, "claimed_at": {"$gte": since}})
    _attach(views, claims, lambda v, doc: v.claims.append(doc))
    _attach(views, _find(db, FAILURES, {"bet_id": {"$in": ids}, "at": {"$gte": since}}), _add_failure)
    for beat in _find(
        db,
        HEARTBEATS,
        {"bets.bet_id": {"$in": ids}, "started_at": {"$gte": since}},
        ["agent", "started_at", "worker", "bets"],
    ):
        _attach(views, _touches(beat), lambda v, doc: v.touches.append(doc))
    return sorted(views.values(), key=lambda v: v.bet_id)


def _view(doc: Doc) -> BetView | None:
    """The bet's projection, or None when it does not parse (the enforcer reports those)."""
    updated_at = _when(doc, "updated_at")
    stage, seq = doc.get("stage"), doc.get("seq")
    if updated_at is None or not isinstance(stage, str) or not isinstance(seq, int):
        return None
    return BetView(bet_id=str(doc["_id"]), stage=stage, seq=seq, updated_at=updated_at)


def _attach(views: dict[str, BetView], docs: Iterable[Doc], add: Callable[[BetView, Doc], None]) -> None:
    for doc in docs:
        view = views.get(str(doc.get("bet_id")))
        if view is not None:
            add(view, doc)


def _add_failure(view: BetView, doc: Doc) -> None:
    if doc.get("seq") == view.seq:
        view.failures.append(doc)


def _touches(beat: Doc) -> list[Doc]:
    """The heartbeat's per-bet entries, each with the heartbeat's id, agent, worker and start."""
    at = _when(beat, "started_at")
    if at is None:
        return []
    common = {"heartbeat_id": str(beat.get("_id")), "agent": beat.get("agent"), "worker": beat.get("worker")}
    entries = beat.get("bets") or []
    return [{**entry, **common, "at": at} for entry in entries if isinstance(entry, dict)]


# --- the checks: each yields the findings of one kind for one bet ----------------------


def _past_sla(view: BetView, audit: _Audit) -> Iterator[Finding]:
    sla = audit.protocols.effective_sla(audit.pipeline, view.stage)
    waited = audit.now - view.updated_at
    if sla is None or waited <= sla:
        return
    agent = _must_act(view, audit)
    yield _stranded(
        view,
        FindingKind.PAST_SLA,
        agent,
        f"stranded:sla:{view.bet_id}:{view.seq}",
        f"bet {view.bet_id} has waited {_hours(waited)} at {view.stage} (SLA {_hours(sla)})",
        {"sla_hours": sla.total_seconds() / 3600, "waited_hours": round(waited.total_seconds() / 3600, 2)},
    )


def _claim_expired(view: BetView, audit: _Audit) -> Iterator[Finding]:
    latest = max(view.claims, key=lambda c: (_int(c.get("seq")), _int(c.get("n"))), default=None)
    if latest is None or latest.get("seq") != view.seq or latest.get("released_at") is not None:
        return
    expires = _when(latest, "expires_at")
    if expires is None or expires > audit.now:
        return
    agent = str(latest.get("agent"))
    yield _stranded(
        view,
        FindingKind.CLAIM_EXPIRED,
        agent,
        f"stranded:claim-expired:{view.bet_id}:{view.seq}",
        f"bet {view.bet_id} at {view.stage}: {agent}'s claim expired unreleased at {_stamp(expires)} "
        f"(heartbeat {latest.get('heartbeat_id')} died?) and nobody moved it since",
        {
            "claim_id": str(latest.get("_id")),
            "claim_agent": agent,
            "expired_at": expires,
            "claim_heartbeat_id": str(latest.get("heartbeat_id")),
        },
    )


def _repeated_failures(view: BetView, audit: _Audit) -> Iterator[Finding]:
    limit = audit.protocols.escalation.max_consecutive_failures
    if len(view.failures) < limit:
        return
    last = max(view.failures, key=lambda f: _when(f, "at") or audit.now)
    agent = str(last.get("agent"))
    yield _stranded(
        view,
        FindingKind.REPEATED_FAILURES,
        agent,
        f"stranded:failures:{view.bet_id}:{view.seq}",
        f"bet {view.bet_id} at {view.stage} failed {len(view.failures)} times in a row "
        f"(limit {limit}); last by {agent}: {last.get('error')}",
        {
            "failures": len(view.failures),
            "limit": limit,
            "last_error": str(last.get("error")),
            "agents": sorted({str(f.get("agent")) for f in view.failures}),
        },
    )


def _oscillating(view: BetView, audit: _Audit) -> Iterator[Finding]:
    limit = audit.protocols.escalation.oscillation_heartbeats
    beats: dict[str, set[str]] = defaultdict(set)
    for touch in view.current_touches:
        if touch.get("outcome") in STUCK_OUTCOMES:
            beats[str(touch.get("agent"))].add(str(touch["heartbeat_id"]))
    for agent, heartbeats in sorted(beats.items()):
        if len(heartbeats) >= limit:
            yield _stranded(
                view,
                FindingKind.OSCILLATING,
                agent,
                f"stranded:oscillating:{view.bet_id}:{view.seq}:{agent}",
                f"bet {view.bet_id} at {view.stage}: {agent} looked at it in {len(heartbeats)} heartbeats "
                f"without moving it (limit {limit})",
                {"heartbeats": len(heartbeats), "limit": limit, "heartbeat_ids": sorted(heartbeats)},
            )


def _dead_end(view: BetView, audit: _Audit) -> Iterator[Finding]:
    if view.stage not in audit.pipeline.stage_map:
        why = "the pipeline no longer has this stage"
    elif not audit.pipeline.edges_from(view.stage):
        why = "no edge leaves this stage"
    elif not audit.pollers(view.stage):
        why = "no agent polls this stage"
    else:
        return
    agent = _last_agent(view) or audit.auditor
    yield _stranded(
        view,
        FindingKind.DEAD_END,
        agent,
        f"stranded:dead-end:{view.bet_id}:{view.stage}",
        f"bet {view.bet_id} is stuck at {view.stage}: {why}",
        {"why": why},
    )


_CHECKS: tuple[Callable[[BetView, _Audit], Iterator[Finding]], ...] = (
    _past_sla,
    _claim_expired,
    _repeated_failures,
    _oscillating,
    _dead_end,
)


def _stranded(view: BetView, kind: FindingKind, agent: str, key: str, what: str, extra: Doc) -> Finding:
    """A stranded-bet finding whose title and detail name the last responsible agent."""
    detail = {
        "bet_id": view.bet_id,
        "stage": view.stage,
        "seq": view.seq,
        "since": view.updated_at,
        "last_transition": _transition_summary(view.last_transition),
        "last_heartbeat": _touch_summary(view.last_touch),
        **extra,
    }
    return Finding(
        kind=kind, agent=agent, dedupe_key=key, title=f"{what}; {_last_words(view)}", detail=detail
    )


def _must_act(view: BetView, audit: _Audit) -> str:
    """The agent that should move the bet on: a poller of its stage, else an edge owner, else the last."""
    owners = sorted({t.owner for t in audit.pipeline.edges_from(view.stage)})
    candidates = [*audit.pollers(view.stage), *owners, _last_agent(view) or audit.auditor]
    return candidates[0]


def _last_agent(view: BetView) -> str | None:
    record = view.last_transition
    return None if record is None else str(record.get("agent"))


def _last_words(view: BetView) -> str:
    """Who moved the bet last and how, then who touched it last in a heartbeat and with what outcome."""
    parts = []
    record = view.last_transition
    if record is not None:
        move = f"{record.get('from_stage') or '(new)'} -> {record.get('to_stage')}"
        parts.append(
            f"last moved by {record.get('agent')} ({record.get('kind')} {move}: {record.get('verdict')})"
        )
    touch = view.last_touch
    if touch is not None:
        error = f" ({touch['error']})" if touch.get("error") else ""
        parts.append(
            f"last touched by {touch.get('agent')} in heartbeat {touch['heartbeat_id']}: "
            f"{touch.get('outcome')}{error}"
        )
    return "; ".join(parts) or "no transition or heartbeat record found"


def _transition_summary(record: Doc | None) -> Doc | None:
    if record is None:
        return None
    keys = ("agent", "kind", "from_stage", "to_stage", "verdict", "heartbeat_id", "protocol_version", "at")
    return {key: record.get(key) for key in keys}


def _touch_summary(touch: Doc | None) -> Doc | None:
    if touch is None:
        return None
    keys = ("heartbeat_id", "agent", "worker", "seq", "outcome", "to_stage", "error", "at")
    return {key: touch.get(key) for key in keys}


# --- which rules touched a bet ---------------------------------------------------------


def protocol_versions_for_bet(db: Database[Doc], bet_id: str) -> list[Doc]:
    """Every protocols version and hash that touched the bet, oldest first.

    One entry per transition record (``source="transition"``) and per heartbeat that
    handled the bet (``source="heartbeat"``), so two bets processed weeks apart can be
    compared rule by rule.
    """
    entries = [_from_transition(doc) for doc in _find(db, TRANSITIONS, {"bet_id": bet_id})]
    for beat in _find(db, HEARTBEATS, {"bets.bet_id": bet_id}):
        entries += _from_heartbeat(beat, bet_id)
    return sorted(
        entries, key=lambda e: (e["at"] or datetime.min.replace(tzinfo=UTC), e["source"] != "heartbeat")
    )


def _from_transition(doc: Doc) -> Doc:
    return {
        "source": "transition",
        "seq": doc.get("seq"),
        "agent": doc.get("agent"),
        "heartbeat_id": doc.get("heartbeat_id"),
        "protocol_version": doc.get("protocol_version"),
        "protocol_hash": doc.get("protocol_hash"),
        "at": _when(doc, "at"),
        "what": f"{doc.get('kind')} {doc.get('from_stage') or '(new)'} -> {doc.get('to_stage')}",
    }


def _from_heartbeat(beat: Doc, bet_id: str) -> list[Doc]:
    return [
        {
            "source": "heartbeat",
            "seq": entry.get("seq"),
            "agent": beat.get("agent"),
            "heartbeat_id": str(beat.get("_id")),
            "protocol_version": beat.get("protocol_version"),
            "protocol_hash": beat.get("protocol_hash"),
            "at": _when(beat, "started_at"),
            "what": str(entry.get("outcome")),
        }
        for entry in beat.get("bets") or []
        if isinstance(entry, dict) and entry.get("bet_id") == bet_id
    ]


# --- small helpers -----------------------------------------------------------------------


def _find(db: Database[Doc], collection: str, query: Doc, fields: list[str] | None = None) -> list[Doc]:
    with reading(collection, source="audit"):
        return list(db[collection].find(query, fields))


def _when(doc: Doc, key: str) -> datetime | None:
    """A stored date as an aware UTC datetime (None if missing or not a date)."""
    value = doc.get(key)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _int(value: object) -> int:
    return value if isinstance(value, int) else -1


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f}h"


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
