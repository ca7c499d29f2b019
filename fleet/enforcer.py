"""The transition enforcer: the only code path that creates a bet or changes its stage.

Every change is checked against the pipeline's handoff map (the edge must exist and
the calling agent must own it) and against the caller's view of the bet (the
``expected_seq`` it read must still be the bet's latest). A refused call raises a
:class:`~fleet.errors.LedgerError` and inserts one ``REFUSALS`` document; it changes no
record and no stage (a stale refusal may repair a lagging projection: that is a cache).

Atomicity rests on one primitive only: inserting the record ``<bet_id>:<seq+1>``
into ``TRANSITIONS`` (unique ``_id``). Of any number of racing writers exactly one
insert succeeds; the others get ``DuplicateKeyError`` and are refused as stale.
FerretDB v1's conditional updates are not atomic, so nothing here relies on one.
The ``BETS`` projection is written after the commit and may lag; every writer
re-checks for a newer record after its own projection write and rolls forward,
and readers (:meth:`Enforcer.get`, :meth:`Enforcer.repair_all`) repair any lag a
crashed writer left behind.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pymongo.database import Database

from fleet import ledger
from fleet.errors import (
    CorruptBet,
    DuplicateBet,
    IllegalTransition,
    InvalidBetData,
    LedgerError,
    NotOwner,
    StaleBet,
    TransitionRefused,
    UnknownBet,
)
from fleet.ledger import Bet, ProtocolStamp, Refusal, TransitionRecord, Violation
from fleet.pipeline import Pipeline, Transition
from fleet.store import Document

logger = logging.getLogger(__name__)

#: How often one call re-reads and rewrites a projection that other writers keep moving;
#: past that, the newer writers' own re-checks take over.
MAX_ROLL_FORWARD = 8

#: How many fresh ids ``create_bet`` tries before giving up (a collision is ~impossible).
ID_ATTEMPTS = 3

E = TypeVar("E", bound=LedgerError)


@dataclass(frozen=True)
class _Attempt:
    """What a caller asked for: everything a refusal document records."""

    bet_id: str | None
    agent: str
    to_stage: str
    expected_seq: int | None
    heartbeat_id: str | None
    stamp: ProtocolStamp | None

    @classmethod
    def of(cls, record: TransitionRecord) -> _Attempt:
        """The attempt that produced ``record`` (for refusing it after a lost race)."""
        stamp = None
        if record.protocol_version is not None and record.protocol_hash is not None:
            stamp = ProtocolStamp(version=record.protocol_version, hash=record.protocol_hash)
        expected = record.seq - 1
        return cls(record.bet_id, record.agent, record.to_stage, expected, record.heartbeat_id, stamp)


class Enforcer:
    """Creates bets and moves them between stages, under the pipeline's handoff map."""

    def __init__(self, db: Database[Document], pipeline: Pipeline) -> None:
        self.db = db
        self.pipeline = pipeline

    # --- writes -------------------------------------------------------------------

    def create_bet(
        self,
        agent: str,
        fields: dict[str, Any],
        *,
        bet_id: str | None = None,
        heartbeat_id: str | None = None,
        stamp: ProtocolStamp | None = None,
        verdict: str = "created",
        evidence: dict[str, Any] | None = None,
    ) -> Bet:
        """Create a bet in the initial stage at seq 0; only the pipeline's creators may.

        Raises NotOwner (not a creator) or DuplicateBet (``bet_id`` taken), both recorded;
        InvalidBetData if ``fields`` or ``evidence`` cannot be stored (nothing recorded).
        """
        initial = self.pipeline.initial_stage
        attempt = _Attempt(bet_id, agent, initial, None, heartbeat_id, stamp)
        if agent not in self.pipeline.creators:
            detail = f"only creators may create bets: {', '.join(self.pipeline.creators)}"
            raise self._refused(attempt, NotOwner(bet_id, agent, None, initial, detail))
        if bet_id is not None and not bet_id:
            raise InvalidBetData(bet_id, "a bet id may not be empty")
        ledger.check_storable(bet_id, fields, "fields")
        ledger.check_storable(bet_id, evidence or {}, "evidence")
        candidates = [bet_id] if bet_id else [uuid.uuid4().hex[:12] for _ in range(ID_ATTEMPTS)]
        for candidate in candidates:
            record = self._new_record(
                attempt, candidate, 0, None, ledger.CREATE_KIND, verdict, evidence, fields
            )
            if self._commit_record(record):
                return self._project(record)
        taken = candidates[-1]
        raise self._refused(replace(attempt, bet_id=taken), DuplicateBet(taken))

    def advance(
        self,
        bet_id: str,
        to_stage: str,
        agent: str,
        expected_seq: int,
        *,
        verdict: str,
        evidence: dict[str, Any] | None = None,
        heartbeat_id: str | None = None,
        stamp: ProtocolStamp | None = None,
    ) -> Bet:
        """Move the bet from its stage at ``expected_seq`` to ``to_stage``; return it at the new seq.

        Raises (and records) UnknownBet, StaleBet (the bet is not at ``expected_seq`` any
        more, or another writer won the race), IllegalTransition (no such edge) or NotOwner
        (another agent owns the edge). A refused call changes no transition and no stage.
        """
        record = self._plan_advance(
            bet_id, to_stage, agent, expected_seq,
            verdict=verdict, evidence=evidence, heartbeat_id=heartbeat_id, stamp=stamp,
        )  # fmt: skip
        if not self._commit_record(record):
            attempt = _Attempt.of(record)
            raise self._refused(attempt, self._stale(attempt, bet_id, "lost the race", record.seq))
        return self._project(record)

    # --- reads --------------------------------------------------------------------

    def get(self, bet_id: str) -> Bet:
        """The bet's current state; a missing, lagging or unreadable projection is repaired first."""
        bet = self._projection_or_none(bet_id)
        if bet is not None and not ledger.record_exists(self.db, bet_id, bet.seq + 1):
            return bet
        return self._roll_forward(bet_id, bet.seq + 1 if bet else 0)[0]

    def history(self, bet_id: str) -> list[TransitionRecord]:
        """Every transition of the bet, by seq; UnknownBet if it has none.

        Stops at the first missing seq (only a damaged ledger has one; verify reports it).
        """
        records = ledger.read_history(self.db, bet_id)
        if not records:
            raise UnknownBet(bet_id)
        return records

    def bets_at(self, stages: Sequence[str], limit: int) -> list[Bet | CorruptBet]:
        """Up to ``limit`` bets at ``stages``, least recently moved first.

        Reads projections (which may lag: a stale one is refused at ``advance``); one that
        does not parse is returned as a CorruptBet so the caller can skip and flag it.
        """
        return ledger.projections_at(self.db, stages, limit)

    def refusals(self, bet_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded refusals, of one bet or of all, newest first."""
        return ledger.read_refusals(self.db, bet_id, limit)

    # --- operations -----------------------------------------------------------------

    def repair_all(self) -> int:
        """Roll forward every missing, lagging or unreadable projection; return how many."""
        projected = ledger.raw_projections(self.db)
        repaired = 0
        for bet_id, (seq, stage) in ledger.last_stages(self.db).items():
            if not _needs_repair(projected.get(bet_id), seq, stage):
                continue
            try:
                repaired += self._roll_forward(bet_id, seq)[1]
            except CorruptBet as exc:  # verify() reports it; repairing the rest matters more
                logger.warning("cannot repair a bet: %s", exc)
        return repaired

    def verify(self, bet_id: str | None = None) -> list[Violation]:
        """Check the ledger's invariants, for one bet or all; empty when healthy.

        Per bet: seqs contiguous from 0; record 0 creates the bet in the initial stage by
        a creator; each step leaves the previous step's stage along an edge of the map,
        owned by the record's agent, of the edge's kind; every record parses; the
        projection matches the last record. Writers running meanwhile can show as a
        lagging projection: verify a quiet ledger.
        """
        records = ledger.group_by_bet(ledger.raw_records(self.db, bet_id))
        projections = ledger.raw_projections(self.db, bet_id)
        if bet_id is not None and not records and not projections:
            raise UnknownBet(bet_id)
        violations: list[Violation] = []
        for bid in sorted(set(records) | set(projections)):
            docs = records.get(bid, [])
            violations += _check_bet(self.pipeline, bid, docs, projections.get(bid))
        return violations

    # --- the two halves of a write: commit, then project ------------------------------

    def _commit_record(self, record: TransitionRecord) -> bool:
        """Insert the record: the commit point. False if another writer holds that seq."""
        return ledger.commit_record(self.db, record)

    def _project(self, record: TransitionRecord) -> Bet:
        """Write the projection of a just-committed record; roll forward if it was overtaken."""
        first = record if record.seq == 0 else self._first_record(record.bet_id)
        bet = ledger.bet_from_records(first, record)
        ledger.write_projection(self.db, bet)
        if ledger.record_exists(self.db, bet.bet_id, bet.seq + 1):
            # A newer writer may have projected before our (older) write landed: fix it now.
            self._roll_forward(bet.bet_id, bet.seq + 1)
        return bet

    # --- advance, step by step ------------------------------------------------------

    def _plan_advance(
        self,
        bet_id: str,
        to_stage: str,
        agent: str,
        expected_seq: int,
        *,
        verdict: str,
        evidence: dict[str, Any] | None,
        heartbeat_id: str | None,
        stamp: ProtocolStamp | None,
    ) -> TransitionRecord:
        """Check the request and build the record to commit; refusals are raised here."""
        attempt = _Attempt(bet_id, agent, to_stage, expected_seq, heartbeat_id, stamp)
        ledger.check_storable(bet_id, evidence or {}, "evidence")
        current = self._record_at(attempt, bet_id, expected_seq)
        edge = self._edge_for(attempt, bet_id, current.to_stage)
        kind = edge.kind.value
        return self._new_record(attempt, bet_id, expected_seq + 1, current.to_stage, kind, verdict, evidence)

    def _record_at(self, attempt: _Attempt, bet_id: str, seq: int) -> TransitionRecord:
        """The authoritative record the caller's view is based on (never the projection)."""
        record = ledger.read_record(self.db, bet_id, seq)
        if record is not None:
            return record
        if seq != 0 and ledger.record_exists(self.db, bet_id, 0):
            raise self._refused(attempt, self._stale(attempt, bet_id, "no record at that seq"))
        raise self._refused(attempt, UnknownBet(bet_id))

    def _edge_for(self, attempt: _Attempt, bet_id: str, from_stage: str) -> Transition:
        """The edge the caller may take from ``from_stage``, or a refusal."""
        agent, to_stage = attempt.agent, attempt.to_stage
        edge = self.pipeline.edge(from_stage, to_stage)
        if edge is not None and edge.owner == agent:
            return edge
        if ledger.record_exists(self.db, bet_id, (attempt.expected_seq or 0) + 1):
            # The bet moved on: "re-read it" helps the caller more than a verdict on an old stage.
            moved = self._stale(attempt, bet_id, "the bet moved on", (attempt.expected_seq or 0) + 1)
            raise self._refused(attempt, moved)
        if edge is None:
            why = self._why_illegal(from_stage, to_stage)
            raise self._refused(attempt, IllegalTransition(bet_id, agent, from_stage, to_stage, why))
        why = f"the edge is owned by {edge.owner!r}"
        raise self._refused(attempt, NotOwner(bet_id, agent, from_stage, to_stage, why))

    def _why_illegal(self, from_stage: str, to_stage: str) -> str:
        stages = self.pipeline.stage_map
        if to_stage not in stages:
            return f"unknown stage {to_stage!r}"
        if from_stage in stages and self.pipeline.is_terminal(from_stage):
            return f"{from_stage!r} is a terminal stage"
        allowed = ", ".join(t.dest for t in self.pipeline.edges_from(from_stage)) or "none"
        return f"no such edge in the handoff map (allowed from {from_stage!r}: {allowed})"

    def _new_record(
        self,
        attempt: _Attempt,
        bet_id: str,
        seq: int,
        from_stage: str | None,
        kind: str,
        verdict: str,
        evidence: dict[str, Any] | None,
        fields: dict[str, Any] | None = None,
    ) -> TransitionRecord:
        stamp = attempt.stamp
        return TransitionRecord(
            bet_id=bet_id,
            seq=seq,
            from_stage=from_stage,
            to_stage=attempt.to_stage,
            agent=attempt.agent,
            kind=kind,
            heartbeat_id=attempt.heartbeat_id,
            protocol_version=stamp.version if stamp else None,
            protocol_hash=stamp.hash if stamp else None,
            verdict=verdict,
            evidence=dict(evidence or {}),
            fields=dict(fields or {}),
            at=ledger.now(),
        )

    # --- refusals -----------------------------------------------------------------

    def _stale(self, attempt: _Attempt, bet_id: str, why: str, start: int | None = None) -> StaleBet:
        """A StaleBet naming where the bet really is; repairs its projection on the way.

        ``start``: a seq known to exist, to find the bet's end from (default: the projection's).
        """
        bet = self._roll_forward(bet_id, start)[0]  # the caller may have read a lagging projection
        detail = f"{why}: bet is at seq {bet.seq} ({bet.stage}), caller expected seq {attempt.expected_seq}"
        return StaleBet(bet_id, attempt.agent, bet.stage, attempt.to_stage, detail)

    def _refused(self, attempt: _Attempt, exc: E) -> E:
        """Record the refusal, then hand the error back for the caller to raise."""
        refused = exc if isinstance(exc, TransitionRefused) else None
        stamp = attempt.stamp
        ledger.insert_refusal(
            self.db,
            Refusal(
                bet_id=attempt.bet_id,
                agent=attempt.agent,
                from_stage=refused.from_stage if refused else None,
                to_stage=attempt.to_stage,
                expected_seq=attempt.expected_seq,
                reason=refused.reason if refused else type(exc).__name__,
                error=type(exc).__name__,
                detail=refused.detail if refused else str(exc),
                heartbeat_id=attempt.heartbeat_id,
                protocol_version=stamp.version if stamp else None,
                protocol_hash=stamp.hash if stamp else None,
                at=ledger.now(),
            ),
        )
        logger.info("refused: %s", exc)
        return exc

    # --- projection repair ----------------------------------------------------------

    def _roll_forward(self, bet_id: str, start: int | None = None) -> tuple[Bet, bool]:
        """Make the projection match the bet's last record; return the bet and whether it wrote.

        ``start`` is a seq known to exist (default: the projection's), to walk forward from.
        After each write it checks for a newer record: if one landed meanwhile, its writer
        may have projected before our write, so we go again (bounded: that writer re-checks).
        """
        current = self._projection_or_none(bet_id)
        if start is None:
            start = current.seq if current else 0
        wrote = False
        for _ in range(MAX_ROLL_FORWARD):
            bet = self._bet_from_records(bet_id, start)
            if current == bet:
                break  # a record landing after our read is its own writer's to project
            ledger.write_projection(self.db, bet)
            wrote = True
            if not ledger.record_exists(self.db, bet_id, bet.seq + 1):
                break
            start, current = bet.seq + 1, self._projection_or_none(bet_id)
        return bet, wrote

    def _bet_from_records(self, bet_id: str, start: int) -> Bet:
        last = ledger.latest_from(self.db, bet_id, start)
        if last is None and start > 0:
            last = ledger.latest_record(self.db, bet_id)  # ``start`` was past the end: search
        if last is None:
            raise UnknownBet(bet_id)
        first = last if last.seq == 0 else self._first_record(bet_id)
        return ledger.bet_from_records(first, last)

    def _first_record(self, bet_id: str) -> TransitionRecord:
        first = ledger.read_record(self.db, bet_id, 0)
        if first is None:
            raise CorruptBet(bet_id, "record 0 (the creation) is missing")
        return first

    def _projection_or_none(self, bet_id: str) -> Bet | None:
        try:
            return ledger.read_projection(self.db, bet_id)
        except CorruptBet:
            return None  # a cache that does not parse is rebuilt from the records


# --- repair and verify helpers ----------------------------------------------------


def _needs_repair(doc: Document | None, seq: int, stage: str) -> bool:
    """A cheap pre-filter: missing, unreadable or not at the last record's seq and stage."""
    if doc is None:
        return True
    try:
        bet = ledger.parse_projection(doc)
    except CorruptBet:
        return True
    return (bet.seq, bet.stage) != (seq, stage)


def _check_bet(
    pipeline: Pipeline, bet_id: str, docs: list[Document], projection: Document | None
) -> list[Violation]:
    records, violations = _parse_records(bet_id, docs)
    violations += _check_sequence(bet_id, records)
    if records and records[0].seq == 0:
        violations += _check_create(pipeline, records[0])
    by_seq = {record.seq: record for record in records}
    for record in records:
        if record.seq > 0:
            violations += _check_step(pipeline, by_seq.get(record.seq - 1), record)
    violations += _check_projection(bet_id, records[-1] if records else None, projection)
    return violations


def _parse_records(bet_id: str, docs: list[Document]) -> tuple[list[TransitionRecord], list[Violation]]:
    records: list[TransitionRecord] = []
    violations: list[Violation] = []
    for doc in docs:
        try:
            records.append(ledger.parse_record(doc))
        except CorruptBet as exc:
            seq = doc.get("seq")
            violations.append(
                Violation(bet_id=bet_id, seq=seq if isinstance(seq, int) else None, problem=exc.problem)
            )
    records.sort(key=lambda record: record.seq)
    return records, violations


def _check_sequence(bet_id: str, records: list[TransitionRecord]) -> list[Violation]:
    if not records:
        return []
    present = {record.seq for record in records}
    missing = sorted(set(range(records[-1].seq + 1)) - present)
    return [Violation(bet_id=bet_id, seq=seq, problem=f"no readable record at seq {seq}") for seq in missing]


def _check_create(pipeline: Pipeline, first: TransitionRecord) -> list[Violation]:
    problems = []
    if first.kind != ledger.CREATE_KIND or first.from_stage is not None:
        problems.append(f"record 0 is a {first.kind!r} from {first.from_stage!r}, not a create")
    if first.to_stage != pipeline.initial_stage:
        problems.append(f"created in {first.to_stage!r}, not the initial stage {pipeline.initial_stage!r}")
    if first.agent not in pipeline.creators:
        problems.append(f"created by {first.agent!r}, who is not a creator")
    return [Violation(bet_id=first.bet_id, seq=0, problem=problem) for problem in problems]


def _check_step(
    pipeline: Pipeline, prev: TransitionRecord | None, record: TransitionRecord
) -> list[Violation]:
    return [
        Violation(bet_id=record.bet_id, seq=record.seq, problem=problem)
        for problem in _step_problems(pipeline, prev, record)
    ]


def _step_problems(
    pipeline: Pipeline, prev: TransitionRecord | None, record: TransitionRecord
) -> Iterator[str]:
    move = f"{record.from_stage} -> {record.to_stage}"
    if prev is not None and record.from_stage != prev.to_stage:
        yield f"leaves {record.from_stage!r} but seq {prev.seq} left the bet in {prev.to_stage!r}"
    edge = pipeline.edge(record.from_stage or "", record.to_stage)
    if edge is None:
        yield f"{move} is not an edge of the handoff map"
        return
    if edge.owner != record.agent:
        yield f"{move} was taken by {record.agent!r} but is owned by {edge.owner!r}"
    if edge.kind.value != record.kind:
        yield f"{move} is recorded as {record.kind!r} but the edge's kind is {edge.kind.value!r}"


def _check_projection(bet_id: str, last: TransitionRecord | None, doc: Document | None) -> list[Violation]:
    def violation(problem: str) -> list[Violation]:
        return [Violation(bet_id=bet_id, seq=None, problem=problem)]

    if last is None:
        return violation("projection without any readable record") if doc is not None else []
    if doc is None:
        return violation(f"projection missing (last record: seq {last.seq}, {last.to_stage!r})")
    try:
        bet = ledger.parse_projection(doc)
    except CorruptBet as exc:
        return violation(exc.problem)
    if (bet.seq, bet.stage) != (last.seq, last.to_stage):
        where = f"seq {bet.seq} ({bet.stage!r})"
        return violation(f"projection at {where} but the last record is seq {last.seq} ({last.to_stage!r})")
    return []
