"""The ledger: the one owner of transition records, bet projections and refusals in the store.

Storage (collection names live in :mod:`fleet.constants`):

- ``TRANSITIONS``: one document per accepted transition, ``_id = "<bet_id>:<seq>"``.
  Inserting it IS the commit point: the unique ``_id`` index lets exactly one writer
  win each ``seq``. That is the only primitive that is atomic on FerretDB v1 (whose
  conditional updates are not), and it is just as atomic on MongoDB. On a replica set
  the insert waits for a majority, and every read of a record goes to the primary.
- ``BETS``: the current state of each bet, ``_id = bet_id``. A cache of the bet's last
  record that may lag (a writer can die between commit and projection, or a slow
  writer's projection can land after a newer one); readers repair it by rolling forward.
- ``REFUSALS``: one inserted document per refused attempt, never updated.

Writes cost what they must: a move is the record insert plus the projection write.
Everything else a writer used to re-check is on the repair path (:meth:`Ledger.get`,
:meth:`Ledger.roll_forward`, :meth:`Ledger.repair_all`). The rules of who may write
what live in :mod:`fleet.ledger.enforcer`, the only caller of the writers here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

from bson.errors import InvalidDocument
from pymongo import ASCENDING, DESCENDING, ReadPreference, WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fleet.constants import BETS, REFUSALS, TRANSITIONS
from fleet.errors import CorruptBet, InvalidBetData, UnknownBet, first_line
from fleet.ledger.records import (
    Bet,
    Refusal,
    TransitionRecord,
    bet_from_records,
    parse_projection,
    parse_record,
    parsed_or_error,
    projection_doc,
    record_doc,
    record_id,
)
from fleet.store import Document, clock, store_kind, translated

logger = logging.getLogger(__name__)

#: How often one call re-reads and rewrites a projection that other writers keep moving;
#: past that, the newer writers' own repairs take over.
MAX_ROLL_FORWARD = 8


class Ledger:
    """Records, projections and refusals of one database; safe to share between threads."""

    def __init__(self, db: Database[Document]) -> None:
        self.db = db
        self.clock = clock(db)

    def now(self) -> datetime:
        """The store's time: records from different hosts order by one clock."""
        return self.clock.now()

    @cached_property
    def _records(self) -> Collection[Document]:
        # Asked on first use, not at construction: building a Ledger must not need the store.
        replica_set = store_kind(self.db).replica_set
        concern = WriteConcern(w="majority") if replica_set else None
        return self.db[TRANSITIONS].with_options(
            read_preference=ReadPreference.PRIMARY, write_concern=concern
        )

    # --- records --------------------------------------------------------------------

    def commit(self, record: TransitionRecord) -> bool:
        """Insert ``record``: the commit point. False if the bet already has a record at its seq."""
        with translated("ledger: committing a record"):
            try:
                self._records.insert_one(record_doc(record))
            except DuplicateKeyError:
                return False
            except InvalidDocument as exc:
                raise InvalidBetData(record.bet_id, first_line(exc)) from None
        return True

    def record(self, bet_id: str, seq: int) -> TransitionRecord | None:
        """The bet's record at ``seq``, or None."""
        with translated("ledger: reading a record"):
            doc = self._records.find_one({"_id": record_id(bet_id, seq)})
        return None if doc is None else parse_record(doc)

    def has_record(self, bet_id: str, seq: int) -> bool:
        """Whether the bet has a record at ``seq`` (without parsing it)."""
        with translated("ledger: reading a record"):
            return self._records.find_one({"_id": record_id(bet_id, seq)}, {"_id": 1}) is not None

    def history(self, bet_id: str) -> list[TransitionRecord]:
        """The bet's records from seq 0 up to the first missing one, by point reads.

        FerretDB v1 answers only ``_id`` equality from an index (see fleet.store.indexes):
        walking ``_id``s stays fast however many records the ledger holds.
        """
        records: list[TransitionRecord] = []
        while (found := self.record(bet_id, len(records))) is not None:
            records.append(found)
        return records

    def _last_from(self, bet_id: str, seq: int) -> TransitionRecord | None:
        """The bet's last record, walking forward from ``seq``; None if there is no ``seq``."""
        last = self.record(bet_id, seq)
        while last is not None and (following := self.record(bet_id, last.seq + 1)) is not None:
            last = following
        return last

    def _last_by_query(self, bet_id: str) -> TransitionRecord | None:
        """The bet's record with the highest seq, by a query (a scan on FerretDB: repair only)."""
        with translated("ledger: reading records"):
            doc = self._records.find_one({"bet_id": bet_id}, sort=[("seq", DESCENDING)])
        return None if doc is None else parse_record(doc)

    def raw_records(self, bet_id: str | None = None) -> list[Document]:
        """Record documents as stored (unparsed), of one bet or of all."""
        query: Document = {} if bet_id is None else {"bet_id": bet_id}
        with translated("ledger: reading records"):
            return list(self._records.find(query))

    def last_stages(self) -> dict[str, tuple[int, str]]:
        """bet_id -> (seq, stage) of its highest record, from one scan of every record."""
        latest: dict[str, tuple[int, str]] = {}
        with translated("ledger: reading records"):
            docs = list(self._records.find({}, {"bet_id": 1, "seq": 1, "to_stage": 1}))
        for doc in docs:
            bet_id, seq = doc.get("bet_id"), doc.get("seq")
            if not isinstance(bet_id, str) or not isinstance(seq, int):
                continue  # unreadable: verify() reports it
            if bet_id not in latest or seq > latest[bet_id][0]:
                latest[bet_id] = (seq, str(doc.get("to_stage")))
        return latest

    # --- projections ----------------------------------------------------------------

    def project(self, bet: Bet) -> None:
        """Replace (or create) the bet's projection with ``bet``."""
        doc = projection_doc(bet)
        with translated("ledger: writing a projection"):
            try:
                self.db[BETS].replace_one({"_id": bet.bet_id}, doc, upsert=True)
            except DuplicateKeyError:
                # Two upserts of a missing projection raced and ours tried to insert second.
                self.db[BETS].replace_one({"_id": bet.bet_id}, doc)

    def projection(self, bet_id: str) -> Bet | None:
        """The bet's projection, or None; :class:`CorruptBet` if it does not parse."""
        with translated("ledger: reading a projection"):
            doc = self.db[BETS].find_one({"_id": bet_id})
        return None if doc is None else parse_projection(doc)

    def raw_projections(self, bet_id: str | None = None) -> dict[str, Document]:
        """Projection documents as stored (unparsed) by bet id, of one bet or of all."""
        query: Document = {} if bet_id is None else {"_id": bet_id}
        with translated("ledger: reading projections"):
            return {str(doc["_id"]): doc for doc in self.db[BETS].find(query)}

    def waiting(self, stages: Sequence[str], limit: int) -> list[Bet | CorruptBet]:
        """Up to ``limit`` projections at ``stages``, least recently attempted first.

        Unparsable ones come back as CorruptBet, so the caller can skip and flag them.
        Projections without ``attempted_at`` (written by an older fleet) sort first.
        """
        if not stages or limit <= 0:
            return []  # pymongo's limit(0) means "no limit"
        query = {"stage": {"$in": list(stages)}}
        order = [("attempted_at", ASCENDING), ("_id", ASCENDING)]
        with translated("ledger: listing bets"):
            docs = list(self.db[BETS].find(query).sort(order).limit(limit))
        return [parsed_or_error(doc) for doc in docs]

    def touch(self, bet: Bet) -> None:
        """Record that an agent worked on ``bet`` without moving it (it goes to the back).

        Only ``attempted_at`` is set, and only on the projection still at the caller's seq:
        a bet that moved meanwhile is not put back. On a store whose update filters are
        not atomic (FerretDB v1 reads, filters and writes the whole document back), a move
        committed between that read and write is still overwritten; so the touch checks for
        a newer record afterwards and rolls the projection forward if there is one. The
        mover inserts its record before it projects, so one of the two writes last with it.
        """
        with translated("ledger: marking an attempt"):
            at_seq = {"_id": bet.bet_id, "seq": bet.seq}
            self.db[BETS].update_one(at_seq, {"$set": {"attempted_at": self.now()}})
        # Only where the filter is not atomic can the write have landed over a newer move.
        if store_kind(self.db).ferretdb and self.has_record(bet.bet_id, bet.seq + 1):
            self.roll_forward(bet.bet_id, bet.seq + 1)

    def get(self, bet_id: str) -> Bet:
        """The bet's current state; a missing, lagging or unreadable projection is repaired first."""
        bet = self._projection_or_none(bet_id)
        if bet is not None and not self.has_record(bet_id, bet.seq + 1):
            return bet
        return self.roll_forward(bet_id, bet.seq + 1 if bet else 0)[0]

    def _projection_or_none(self, bet_id: str) -> Bet | None:
        try:
            return self.projection(bet_id)
        except CorruptBet:
            return None  # a cache that does not parse is rebuilt from the records

    # --- repair ---------------------------------------------------------------------

    def roll_forward(self, bet_id: str, start: int | None = None) -> tuple[Bet, bool]:
        """Make the projection match the bet's last record; return the bet and whether it wrote.

        ``start`` is a seq known to exist (default: the projection's), to walk forward from.
        After each write it checks for a newer record: if one landed meanwhile, its writer
        may have projected before our write, so we go again (bounded).
        """
        current = self._projection_or_none(bet_id)
        if start is None:
            start = current.seq if current else 0
        wrote = False
        for _ in range(MAX_ROLL_FORWARD):
            bet = self._bet_from_records(bet_id, start, current)
            if current is not None and (current.seq, current.stage) == (bet.seq, bet.stage):
                break  # a record landing after our read is its own writer's to project
            self.project(bet)
            wrote = True
            if not self.has_record(bet_id, bet.seq + 1):
                break
            start, current = bet.seq + 1, self._projection_or_none(bet_id)
        return bet, wrote

    def _bet_from_records(self, bet_id: str, start: int, current: Bet | None) -> Bet:
        last = self._last_from(bet_id, start)
        if last is None and start > 0:
            last = self._last_by_query(bet_id)  # ``start`` was past the end: search
        if last is None:
            raise UnknownBet(bet_id)
        if current is not None and current.seq == last.seq:
            return current
        first = last if last.seq == 0 else self.first_record(bet_id)
        return bet_from_records(first, last)

    def first_record(self, bet_id: str) -> TransitionRecord:
        """Record 0 (the creation); CorruptBet if the bet has later records but not that one."""
        first = self.record(bet_id, 0)
        if first is None:
            raise CorruptBet(bet_id, "record 0 (the creation) is missing")
        return first

    def repair_all(self) -> int:
        """Roll forward every missing, lagging or unreadable projection; return how many."""
        projected = self.raw_projections()
        repaired = 0
        for bet_id, (seq, stage) in self.last_stages().items():
            if not _needs_repair(projected.get(bet_id), seq, stage):
                continue
            try:
                repaired += self.roll_forward(bet_id, seq)[1]
            except CorruptBet as exc:  # verify() reports it; repairing the rest matters more
                logger.warning("cannot repair a bet: %s", exc)
        return repaired

    # --- refusals -------------------------------------------------------------------

    def refuse(self, refusal: Refusal) -> None:
        """Store one refused attempt (an insert: never lost to a race)."""
        with translated("ledger: recording a refusal"):
            self.db[REFUSALS].insert_one(refusal.model_dump())

    def refusals(self, bet_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Refusal documents (without ``_id``), newest first."""
        if limit <= 0:
            return []
        query: Document = {} if bet_id is None else {"bet_id": bet_id}
        order = [("at", DESCENDING), ("_id", DESCENDING)]
        with translated("ledger: reading refusals"):
            return [dict(doc) for doc in self.db[REFUSALS].find(query, {"_id": 0}).sort(order).limit(limit)]


def _needs_repair(doc: Document | None, seq: int, stage: str) -> bool:
    """A cheap pre-filter: missing, unreadable or not at the last record's seq and stage."""
    if doc is None:
        return True
    try:
        bet = parse_projection(doc)
    except CorruptBet:
        return True
    return (bet.seq, bet.stage) != (seq, stage)
