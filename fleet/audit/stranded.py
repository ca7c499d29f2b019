"""The stranded audit: unfinished bets that are stuck, each with the agent that must act.

Each check of :data:`CHECKS` looks at one bet's view (its projection, last record,
claims, failures and the heartbeats that touched it) and yields the findings of
one kind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pymongo.database import Database

from fleet.audit.common import Doc, find, hours, seq_number, stamp, when
from fleet.audit.findings import DEFAULT_AUDITOR, Finding, FindingKind
from fleet.constants import BETS, CLAIMS, FAILURES, HEARTBEATS, TRANSITIONS
from fleet.definitions.catalogue import Registry
from fleet.definitions.pipeline import Pipeline
from fleet.definitions.protocols import LoadedProtocols, Protocols
from fleet.ledger.records import record_id
from fleet.store import reading

#: Heartbeat outcomes that leave a bet where it was: repeated, they mean oscillation.
STUCK_OUTCOMES = frozenset({"deferred", "failed"})


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
    return [finding for view in views for check in CHECKS for finding in check(view, audit)]


#: Slack for documents dated by an older fleet with worker clocks (today: the store's clock).
ARRIVAL_MARGIN = timedelta(minutes=5)


def bet_views(db: Database[Doc], pipeline: Pipeline) -> list[BetView]:
    """Unfinished bets (not at a terminal stage) with their records, claims, failures and heartbeats.

    A bet whose projection lags its records (a newer transition exists) is left out:
    it moved, and the next audit sees it where it is.
    """
    terminal = [s.name for s in pipeline.stages if s.terminal]
    views = {v.bet_id: v for v in map(_view, find(db, BETS, {"stage": {"$nin": terminal}})) if v}
    ids = list(views)
    if not ids:
        return []
    # One ``_id`` read per record: FerretDB v1 answers ``{_id: {$in: [...]}}`` by reading
    # the whole table, and these are the live bets' two newest records only.
    for view in list(views.values()):
        if _record(db, view.bet_id, view.seq + 1) is not None:
            del views[view.bet_id]  # moved on: the projection lags
        else:
            view.last_transition = _record(db, view.bet_id, view.seq)
    if not views:
        return []
    # Only what happened since the oldest of these bets reached its stage matters (claims,
    # failures and touches at an older seq do not), so the reads stay within that window.
    since = min(v.updated_at for v in views.values()) - ARRIVAL_MARGIN
    claims = find(db, CLAIMS, {"bet_id": {"$in": ids}, "claimed_at": {"$gte": since}})
    _attach(views, claims, lambda v, doc: v.claims.append(doc))
    _attach(views, find(db, FAILURES, {"bet_id": {"$in": ids}, "at": {"$gte": since}}), _add_failure)
    for beat in find(
        db,
        HEARTBEATS,
        {"bets.bet_id": {"$in": ids}, "started_at": {"$gte": since}},
        ["agent", "started_at", "worker", "bets"],
    ):
        _attach(views, _touches(beat), lambda v, doc: v.touches.append(doc))
    return sorted(views.values(), key=lambda v: v.bet_id)


def _record(db: Database[Doc], bet_id: str, seq: int) -> Doc | None:
    with reading(TRANSITIONS):
        return db[TRANSITIONS].find_one({"_id": record_id(bet_id, seq)})


def _view(doc: Doc) -> BetView | None:
    """The bet's projection, or None when it does not parse (the enforcer reports those)."""
    updated_at = when(doc, "updated_at")
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
    at = when(beat, "started_at")
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
        f"bet {view.bet_id} has waited {hours(waited)} at {view.stage} (SLA {hours(sla)})",
        {"sla_hours": sla.total_seconds() / 3600, "waited_hours": round(waited.total_seconds() / 3600, 2)},
    )


def _claim_expired(view: BetView, audit: _Audit) -> Iterator[Finding]:
    latest = max(
        view.claims,
        key=lambda c: (seq_number(c.get("seq")), seq_number(c.get("n"))),
        default=None,
    )
    if latest is None or latest.get("seq") != view.seq or latest.get("released_at") is not None:
        return
    expires = when(latest, "expires_at")
    if expires is None or expires > audit.now:
        return
    agent = str(latest.get("agent"))
    yield _stranded(
        view,
        FindingKind.CLAIM_EXPIRED,
        agent,
        f"stranded:claim-expired:{view.bet_id}:{view.seq}",
        f"bet {view.bet_id} at {view.stage}: {agent}'s claim expired unreleased at {stamp(expires)} "
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
    last = max(view.failures, key=lambda f: when(f, "at") or audit.now)
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


CHECKS: tuple[Callable[[BetView, _Audit], Iterator[Finding]], ...] = (
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
