"""The bet ledger: append-only transition records, the bet projection, and refusals.

Storage (collection names live in :mod:`fleet.constants`):

- ``TRANSITIONS``: one document per accepted transition, ``_id = "<bet_id>:<seq>"``.
  Inserting it IS the commit point: the unique ``_id`` index lets exactly one writer
  win each ``seq``. That is the only primitive that is atomic on FerretDB v1 (whose
  conditional updates are not), and it is just as atomic on MongoDB.
- ``BETS``: the current state of each bet, ``_id = bet_id``. A cache of the bet's
  last record that may lag (a writer can die between commit and projection, or a
  slow writer can overwrite a newer one); readers repair it by rolling forward.
- ``REFUSALS``: one inserted document per refused attempt, never updated.

This module only stores and parses; the rules live in :mod:`fleet.enforcer`, the
only caller of the writers here. Every store call translates connection failures
into :class:`~fleet.errors.LedgerUnavailable` and every document that does not
parse into :class:`~fleet.errors.CorruptBet`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from bson.errors import InvalidDocument
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fleet.constants import BETS, REFUSALS, TRANSITIONS
from fleet.errors import CorruptBet, InvalidBetData, LedgerUnavailable, first_line
from fleet.store import UNAVAILABLE_ERRORS, Document, storage_problem

#: The ``kind`` of a bet's first record (later records carry their edge's kind).
CREATE_KIND = "create"

#: Store failures that mean "the store is briefly unreachable": retrying may help.

P = ParamSpec("P")
R = TypeVar("R")


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


class ProtocolStamp(BaseModel):
    """Which version of the shared protocols a decision was taken under."""

    model_config = ConfigDict(frozen=True)

    version: str
    hash: str


class Bet(_Stored):
    """A bet's current state: its stage, the seq of its last transition and its fields."""

    bet_id: str
    stage: str
    seq: int = Field(ge=0)
    fields: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime


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


class Violation(BaseModel):
    """A broken ledger invariant found by :meth:`fleet.enforcer.Enforcer.verify`."""

    model_config = ConfigDict(frozen=True)

    bet_id: str
    seq: int | None
    problem: str


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


def now() -> datetime:
    """The current UTC time at millisecond precision, so a stored date reads back equal."""
    stamp = datetime.now(UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


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
    )


def check_storable(bet_id: str | None, value: Any, where: str) -> None:
    """Refuse keys and shapes FerretDB cannot store (``.``/``$`` keys, nested arrays)."""
    problem = storage_problem(value, where)
    if problem:
        raise InvalidBetData(bet_id, problem)


def _problem(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top)"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


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


# --- store access -----------------------------------------------------------------


def translated(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a store-unreachable failure inside ``func`` into :class:`LedgerUnavailable`."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UNAVAILABLE_ERRORS as exc:
            what = func.__name__.strip("_").replace("_", " ")
            raise LedgerUnavailable(f"ledger store unavailable ({what}): {first_line(exc)}") from None

    return wrapper


@translated
def commit_record(db: Database[Document], record: TransitionRecord) -> bool:
    """Insert ``record``: the commit point. False if that bet already has a record at that seq."""
    try:
        db[TRANSITIONS].insert_one(record_doc(record))
    except DuplicateKeyError:
        return False
    except InvalidDocument as exc:
        raise InvalidBetData(record.bet_id, first_line(exc)) from None
    return True


@translated
def read_record(db: Database[Document], bet_id: str, seq: int) -> TransitionRecord | None:
    """The bet's record at ``seq``, or None."""
    doc = db[TRANSITIONS].find_one({"_id": record_id(bet_id, seq)})
    return None if doc is None else parse_record(doc)


@translated
def record_exists(db: Database[Document], bet_id: str, seq: int) -> bool:
    """Whether the bet has a record at ``seq`` (without parsing it)."""
    return db[TRANSITIONS].find_one({"_id": record_id(bet_id, seq)}, {"_id": 1}) is not None


# FerretDB v1 on SQLite answers only ``_id`` equality from an index: any other filter scans
# the whole collection. So the hot paths below walk a bet's records by ``_id`` point reads
# (records are contiguous: seq n+1 is committed only after seq n was read).


def latest_from(db: Database[Document], bet_id: str, seq: int) -> TransitionRecord | None:
    """The bet's last record, walking forward from ``seq`` by point reads; None if no ``seq``."""
    record = read_record(db, bet_id, seq)
    while record is not None:
        following = read_record(db, bet_id, record.seq + 1)
        if following is None:
            break
        record = following
    return record


@translated
def latest_record(db: Database[Document], bet_id: str) -> TransitionRecord | None:
    """The bet's record with the highest seq, by a query (a scan on FerretDB: repair paths only)."""
    doc = db[TRANSITIONS].find_one({"bet_id": bet_id}, sort=[("seq", DESCENDING)])
    return None if doc is None else parse_record(doc)


def read_history(db: Database[Document], bet_id: str) -> list[TransitionRecord]:
    """The bet's records from seq 0 up to the first missing one, by point reads."""
    records: list[TransitionRecord] = []
    while (record := read_record(db, bet_id, len(records))) is not None:
        records.append(record)
    return records


@translated
def raw_records(db: Database[Document], bet_id: str | None = None) -> list[Document]:
    """Record documents as stored (unparsed), of one bet or of all."""
    query: Document = {} if bet_id is None else {"bet_id": bet_id}
    return list(db[TRANSITIONS].find(query))


@translated
def last_stages(db: Database[Document]) -> dict[str, tuple[int, str]]:
    """bet_id -> (seq, stage) of its highest record, from one scan of every record."""
    latest: dict[str, tuple[int, str]] = {}
    for doc in db[TRANSITIONS].find({}, {"bet_id": 1, "seq": 1, "to_stage": 1}):
        bet_id, seq = doc.get("bet_id"), doc.get("seq")
        if not isinstance(bet_id, str) or not isinstance(seq, int):
            continue  # unreadable: verify() reports it
        if bet_id not in latest or seq > latest[bet_id][0]:
            latest[bet_id] = (seq, str(doc.get("to_stage")))
    return latest


@translated
def read_projection(db: Database[Document], bet_id: str) -> Bet | None:
    """The bet's projection, or None; :class:`CorruptBet` if it does not parse."""
    doc = db[BETS].find_one({"_id": bet_id})
    return None if doc is None else parse_projection(doc)


@translated
def raw_projections(db: Database[Document], bet_id: str | None = None) -> dict[str, Document]:
    """Projection documents as stored (unparsed) by bet id, of one bet or of all."""
    query: Document = {} if bet_id is None else {"_id": bet_id}
    return {str(doc["_id"]): doc for doc in db[BETS].find(query)}


@translated
def write_projection(db: Database[Document], bet: Bet) -> None:
    """Replace (or create) the bet's projection with ``bet``."""
    doc = projection_doc(bet)
    try:
        db[BETS].replace_one({"_id": bet.bet_id}, doc, upsert=True)
    except DuplicateKeyError:
        # Two upserts of a missing projection raced and ours tried to insert second.
        db[BETS].replace_one({"_id": bet.bet_id}, doc)


@translated
def projections_at(db: Database[Document], stages: Sequence[str], limit: int) -> list[Bet | CorruptBet]:
    """Projections at ``stages``, least recently moved first; unparsable ones as CorruptBet."""
    if not stages or limit <= 0:
        return []  # pymongo's limit(0) means "no limit"
    query = {"stage": {"$in": list(stages)}}
    cursor = db[BETS].find(query).sort([("updated_at", ASCENDING), ("_id", ASCENDING)]).limit(limit)
    return [_parsed_or_error(doc) for doc in cursor]


def _parsed_or_error(doc: Document) -> Bet | CorruptBet:
    try:
        return parse_projection(doc)
    except CorruptBet as exc:
        return exc


@translated
def insert_refusal(db: Database[Document], refusal: Refusal) -> None:
    db[REFUSALS].insert_one(refusal.model_dump())


@translated
def read_refusals(db: Database[Document], bet_id: str | None, limit: int) -> list[dict[str, Any]]:
    """Refusal documents (without ``_id``), newest first."""
    if limit <= 0:
        return []
    query: Document = {} if bet_id is None else {"bet_id": bet_id}
    cursor = db[REFUSALS].find(query, {"_id": 0}).sort([("at", DESCENDING), ("_id", DESCENDING)])
    return [dict(doc) for doc in cursor.limit(limit)]


def group_by_bet(docs: Iterable[Document]) -> dict[str, list[Document]]:
    """Record documents grouped by the bet they belong to (as best it can be told)."""
    grouped: dict[str, list[Document]] = {}
    for doc in docs:
        grouped.setdefault(_bet_id_of(doc), []).append(doc)
    return grouped
