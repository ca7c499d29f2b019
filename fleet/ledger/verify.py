"""The ledger's invariants, checked per bet: ``fleet verify`` and every test's last word.

Per bet: seqs contiguous from 0; record 0 creates the bet in the initial stage by a
creator; each step leaves the previous step's stage along an edge of the map, owned by
the record's agent, of the edge's kind; every record parses; the projection matches the
last record. Writers running meanwhile can show as a lagging projection: verify a quiet
ledger (or repair first).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from fleet.definitions.pipeline import Pipeline
from fleet.errors import CorruptBet, UnknownBet
from fleet.ledger.records import CREATE_KIND, TransitionRecord, group_by_bet, parse_projection, parse_record
from fleet.store import Document

if TYPE_CHECKING:
    from fleet.ledger.ledger import Ledger


class Violation(BaseModel):
    """A broken ledger invariant found by :func:`verify`."""

    model_config = ConfigDict(frozen=True)

    bet_id: str
    seq: int | None
    problem: str


def verify(ledger: Ledger, pipeline: Pipeline, bet_id: str | None = None) -> list[Violation]:
    """Check the ledger's invariants, for one bet or all; empty when healthy."""
    records = group_by_bet(ledger.raw_records(bet_id))
    projections = ledger.raw_projections(bet_id)
    if bet_id is not None and not records and not projections:
        raise UnknownBet(bet_id)
    violations: list[Violation] = []
    for bid in sorted(set(records) | set(projections)):
        violations += _check_bet(pipeline, bid, records.get(bid, []), projections.get(bid))
    return violations


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
            records.append(parse_record(doc))
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
    if first.kind != CREATE_KIND or first.from_stage is not None:
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
        bet = parse_projection(doc)
    except CorruptBet as exc:
        return violation(exc.problem)
    if (bet.seq, bet.stage) != (last.seq, last.to_stage):
        where = f"seq {bet.seq} ({bet.stage!r})"
        return violation(f"projection at {where} but the last record is seq {last.seq} ({last.to_stage!r})")
    return []
