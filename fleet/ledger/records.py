"""What the ledger stores: transition records, bet projections, refusals, and their ids.

Pure data: models, ``_id`` formats, and parsing from/to documents (a document that
does not parse becomes :class:`~fleet.errors.CorruptBet`). No store access here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fleet.errors import CorruptBet, InvalidBetData, validation_problem
from fleet.store import Document, storage_problem

#: The ``kind`` of a bet's first record (later records carry their edge's kind).
CREATE_KIND = "create"


# --- models -----------------------------------------------------------------------


class _Stored(BaseModel):
    """Strict and frozen: a stored document of the wrong type is corrupt, never coerced."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        # A client without tz_aware=True reads naive datetimes; BSON dates are always UTC.
        if isinstance(value, datetime) and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Bet(_Stored):
    """A bet's current state: its stage, the seq of its last transition and its fields.

    ``attempted_at``: when an agent last worked on it (a move, or a try that kept it
    where it is); candidates are offered least recently attempted first, so bets that
    stay do not starve newer ones. Projections written before it existed lack it.
    """

    bet_id: str
    stage: str
    seq: int = Field(ge=0)
    fields: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    attempted_at: datetime | None = None


class TransitionRecord(_Stored):
    """One accepted transition; seq 0 is the bet's creation and carries its ``fields``."""

    bet_id: str
    seq: int = Field(ge=0)
    from_stage: str | None
    to_stage: str
    agent: str
    kind: str
    heartbeat_id: str | None = None
    protocol_version: str | None = None
    protocol_hash: str | None = None
    verdict: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    fields: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class Refusal(_Stored):
    """A refused attempt, as stored in ``REFUSALS``."""

    bet_id: str | None
    agent: str
    from_stage: str | None
    to_stage: str
    expected_seq: int | None
    reason: str
    error: str
    detail: str
    heartbeat_id: str | None
    protocol_version: str | None
    protocol_hash: str | None
    at: datetime


# --- pure helpers -----------------------------------------------------------------


def record_id(bet_id: str, seq: int) -> str:
    """The ``_id`` of a bet's record at ``seq``; its uniqueness is the commit point."""
    return f"{bet_id}:{seq}"


def bet_from_records(first: TransitionRecord, last: TransitionRecord) -> Bet:
    """The bet as of ``last``; fields, creator and creation time come from record 0."""
    return Bet(
        bet_id=last.bet_id,
        stage=last.to_stage,
        seq=last.seq,
        fields=first.fields,
        created_by=first.agent,
        created_at=first.at,
        updated_at=last.at,
        attempted_at=last.at,
    )


def check_storable(bet_id: str | None, value: Any, where: str) -> None:
    """Refuse keys and shapes FerretDB cannot store (``.``/``$`` keys, nested arrays)."""
    problem = storage_problem(value, where)
    if problem:
        raise InvalidBetData(bet_id, problem)


def _problem(exc: ValidationError) -> str:
    return validation_problem(exc)


def _bet_id_of(doc: Document) -> str:
    """Best-effort bet id of a document that may not parse, for error messages."""
    bet_id = doc.get("bet_id")
    if isinstance(bet_id, str):
        return bet_id
    return str(doc.get("_id", "?")).rsplit(":", 1)[0]


def parse_record(doc: Document) -> TransitionRecord:
    """A record document as a model; raise :class:`CorruptBet` if it does not parse."""
    body = {key: value for key, value in doc.items() if key != "_id"}
    try:
        record = TransitionRecord.model_validate(body)
    except ValidationError as exc:
        raise CorruptBet(_bet_id_of(doc), f"record {doc.get('_id')!r}: {_problem(exc)}") from None
    if doc.get("_id") != record_id(record.bet_id, record.seq):
        raise CorruptBet(record.bet_id, f"record {doc.get('_id')!r} has seq {record.seq}")
    return record


def parse_projection(doc: Document) -> Bet:
    """A ``BETS`` document as a :class:`Bet`; raise :class:`CorruptBet` if it does not parse."""
    bet_id = str(doc.get("_id"))
    body = {key: value for key, value in doc.items() if key != "_id"}
    try:
        return Bet.model_validate({**body, "bet_id": bet_id})
    except ValidationError as exc:
        raise CorruptBet(bet_id, f"projection: {_problem(exc)}") from None


def record_doc(record: TransitionRecord) -> Document:
    return {"_id": record_id(record.bet_id, record.seq), **record.model_dump()}


def projection_doc(bet: Bet) -> Document:
    return {"_id": bet.bet_id, **bet.model_dump(exclude={"bet_id"})}


def parsed_or_error(doc: Document) -> Bet | CorruptBet:
    """A projection document as a Bet, or the CorruptBet saying why it does not parse."""
    try:
        return parse_projection(doc)
    except CorruptBet as exc:
        return exc


def group_by_bet(docs: Iterable[Document]) -> dict[str, list[Document]]:
    """Record documents grouped by the bet they belong to (as best it can be told)."""
    grouped: dict[str, list[Document]] = {}
    for doc in docs:
        grouped.setdefault(_bet_id_of(doc), []).append(doc)
    return grouped
