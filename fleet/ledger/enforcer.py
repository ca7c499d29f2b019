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
The ``BETS`` projection is written after the commit and may lag; readers
(:meth:`~fleet.ledger.ledger.Ledger.get`, ``repair_all``) repair any lag a crashed
or slow writer left behind.

A caller that passes its ``view`` of the bet (the :class:`Bet` it read and decided on)
costs two store round trips per move: the record insert and the projection write.
Without a view the enforcer first reads the record at ``expected_seq``. Storage and
repair live in :class:`~fleet.ledger.ledger.Ledger`; this module holds only the rules.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pymongo.database import Database

from fleet.definitions.pipeline import Pipeline, Transition
from fleet.definitions.protocols import ProtocolStamp
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
from fleet.ledger.ledger import Ledger
from fleet.ledger.records import (
    CREATE_KIND,
    Bet,
    Refusal,
    TransitionRecord,
    bet_from_records,
    check_storable,
)
from fleet.ledger.verify import Violation, verify
from fleet.store import Document

logger = logging.getLogger(__name__)

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

    def __init__(self, db: Database[Document], pipeline: Pipeline, ledger: Ledger | None = None) -> None:
        self.db = db
        self.pipeline = pipeline
        self.ledger = ledger or Ledger(db, terminal=frozenset(pipeline.terminal_stages))

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

        A ``bet_id`` this same ``heartbeat_id`` and agent already created is returned as is
        (a retried or redelivered heartbeat creates nothing twice).
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
        check_storable(bet_id, fields, "fields")
        check_storable(bet_id, evidence or {}, "evidence")
        candidates = [bet_id] if bet_id else [uuid.uuid4().hex[:12] for _ in range(ID_ATTEMPTS)]
        for candidate in candidates:
            record = self._new_record(attempt, candidate, 0, None, CREATE_KIND, verdict, evidence, fields)
            if self.ledger.commit(record):
                return self._projected(record, None)
            if (replayed := self._replayed_creation(candidate, agent, heartbeat_id)) is not None:
                return replayed
        taken = candidates[-1]
        raise self._refused(replace(attempt, bet_id=taken), DuplicateBet(taken))

    def _replayed_creation(self, bet_id: str, agent: str, heartbeat_id: str | None) -> Bet | None:
        """The bet, if this very heartbeat created it before (a retry or a redelivery), else None."""
        if heartbeat_id is None:
            return None
        first = self.ledger.record(bet_id, 0)
        if first is None or (first.agent, first.heartbeat_id) != (agent, heartbeat_id):
            return None
        return self.ledger.get(bet_id)  # rolls the projection forward if that run died before it

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
        view: Bet | None = None,
    ) -> Bet:
        """Move the bet from its stage at ``expected_seq`` to ``to_stage``; return it at the new seq.

        ``view``: the bet as the caller read it (at ``expected_seq``); it saves reading the
        record back, and the commit insert still decides every race.
        Raises (and records) UnknownBet, StaleBet (the bet is not at ``expected_seq`` any
        more, or another writer won the race), IllegalTransition (no such edge) or NotOwner
        (another agent owns the edge). A refused call changes no transition and no stage.
        """
        attempt = _Attempt(bet_id, agent, to_stage, expected_seq, heartbeat_id, stamp)
        record = self._plan_advance(attempt, verdict, evidence, view)
        if not self.ledger.commit(record):
            lost = _Attempt.of(record)
            raise self._refused(lost, self._stale(lost, bet_id, "lost the race", record.seq))
        return self._projected(record, view)

    # --- reads (the ledger's; here for callers that hold an enforcer) ----------------

    def get(self, bet_id: str) -> Bet:
        """The bet's current state, repaired first if its projection lags (see Ledger.get)."""
        return self.ledger.get(bet_id)

    def history(self, bet_id: str) -> list[TransitionRecord]:
        """Every transition of the bet, by seq; UnknownBet if it has none.

        Stops at the first missing seq (only a damaged ledger has one; verify reports it).
        """
        records = self.ledger.history(bet_id)
        if not records:
            raise UnknownBet(bet_id)
        return records

    def bets_at(self, stages: Sequence[str], limit: int) -> list[Bet | CorruptBet]:
        """Up to ``limit`` bets at ``stages``, least recently attempted first (see Ledger.waiting)."""
        return self.ledger.waiting(stages, limit)

    def refusals(self, bet_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Recorded refusals, of one bet or of all, newest first."""
        return self.ledger.refusals(bet_id, limit)

    def repair_all(self) -> int:
        """Roll forward every missing, lagging or unreadable projection; return how many."""
        return self.ledger.repair_all()

    def verify(self, bet_id: str | None = None) -> list[Violation]:
        """Check the ledger's invariants against this pipeline (see fleet.ledger.verify)."""
        return verify(self.ledger, self.pipeline, bet_id)

    # --- the rules ----------------------------------------------------------------

    def _plan_advance(
        self, attempt: _Attempt, verdict: str, evidence: dict[str, Any] | None, view: Bet | None
    ) -> TransitionRecord:
        """Check the request and build the record to commit; refusals are raised here."""
        bet_id, seq = attempt.bet_id or "", attempt.expected_seq or 0
        check_storable(bet_id, evidence or {}, "evidence")
        from_stage = self._stage_at(attempt, view)
        edge = self._edge_for(attempt, bet_id, from_stage)
        return self._new_record(attempt, bet_id, seq + 1, from_stage, edge.kind.value, verdict, evidence)

    def _projected(self, record: TransitionRecord, view: Bet | None) -> Bet:
        """Project a just-committed record, then count it (the counts never lead the projection)."""
        bet = self._project(record, view)
        self.ledger.counted(record)
        return bet

    def _project(self, record: TransitionRecord, view: Bet | None) -> Bet:
        """Write the projection of a just-committed record, from the caller's view if it has one."""
        if record.seq == 0:
            bet = bet_from_records(record, record)
        elif view is not None:
            moved = {"stage": record.to_stage, "seq": record.seq, "updated_at": record.at}
            bet = view.model_copy(update={**moved, "attempted_at": record.at})
        else:
            bet = bet_from_records(self.ledger.first_record(record.bet_id), record)
        self.ledger.project(bet)
        return bet

    def _stage_at(self, attempt: _Attempt, view: Bet | None) -> str:
        """The stage the caller's view is based on: its ``view``, else the record (never the projection)."""
        bet_id, seq = attempt.bet_id or "", attempt.expected_seq or 0
        if view is not None:
            if (view.bet_id, view.seq) != (bet_id, seq):
                raise InvalidBetData(
                    bet_id, f"view is of {view.bet_id!r} at seq {view.seq}, not at seq {seq}"
                )
            return view.stage
        record = self.ledger.record(bet_id, seq)
        if record is not None:
            return record.to_stage
        if seq != 0 and self.ledger.has_record(bet_id, 0):
            raise self._refused(attempt, self._stale(attempt, bet_id, "no record at that seq"))
        raise self._refused(attempt, UnknownBet(bet_id))

    def _edge_for(self, attempt: _Attempt, bet_id: str, from_stage: str) -> Transition:
        """The edge the caller may take from ``from_stage``, or a refusal."""
        agent, to_stage = attempt.agent, attempt.to_stage
        edge = self.pipeline.edge(from_stage, to_stage)
        if edge is not None and edge.owner == agent:
            return edge
        if self.ledger.has_record(bet_id, (attempt.expected_seq or 0) + 1):
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
            at=self.ledger.now(),
        )

    # --- refusals -----------------------------------------------------------------

    def _stale(self, attempt: _Attempt, bet_id: str, why: str, start: int | None = None) -> StaleBet:
        """A StaleBet naming where the bet really is; repairs its projection on the way.

        ``start``: a seq known to exist, to find the bet's end from (default: the projection's).
        """
        bet = self.ledger.roll_forward(bet_id, start)[0]  # the caller may have read a lagging projection
        detail = f"{why}: bet is at seq {bet.seq} ({bet.stage}), caller expected seq {attempt.expected_seq}"
        return StaleBet(bet_id, attempt.agent, bet.stage, attempt.to_stage, detail)

    def _refused(self, attempt: _Attempt, exc: E) -> E:
        """Record the refusal, then hand the error back for the caller to raise."""
        refused = exc if isinstance(exc, TransitionRefused) else None
        stamp = attempt.stamp
        self.ledger.refuse(
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
                at=self.ledger.now(),
            ),
        )
        logger.info("refused: %s", exc)
        return exc
