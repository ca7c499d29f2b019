"""The ledger: the one owner of transition records, bet projections and refusals in the store.

Storage (collection names live in :mod:`fleet.constants`):

- ``TRANSITIONS``: one document per accepted transition, ``_id = "<bet_id>:<seq>"``.
  Inserting it IS the commit point: the unique ``_id`` index lets exactly one writer
  win each ``seq``. That is the only primitive that is atomic on FerretDB v1 (whose
  conditional updates are not), and it is just as atomic on MongoDB. On a replica set
  the insert waits for a majority, and every read of a record goes to the primary.
- ``BETS``: the current state of each live bet, ``_id = bet_id``. A cache of the bet's
  last record that may lag (a writer can die between commit and projection, or a slow
  writer's projection can land after a newer one); readers repair it by rolling forward.
- ``BETS_DONE``: the same for finished bets. A projection at a terminal stage is written
  there and removed from ``BETS``, so candidate queries, stage counts and the pipeline
  view read the live work only, however much the fleet has finished (on FerretDB v1
  every filter but ``_id`` equality reads the whole table). A lagging write can put a
  finished bet back into ``BETS`` at an older seq; the next read of it repairs that.
- ``REFUSALS``: one inserted document per refused attempt, never updated.

Writes cost what they must: a move is the record insert plus the projection write.
Everything else a writer used to re-check is on the repair path (:meth:`Ledger.get`,
:meth:`Ledger.roll_forward`, :meth:`Ledger.repair_all`). The rules of who may write
what live in :mod:`fleet.ledger.enforcer`, the only caller of the writers here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from bson.errors import InvalidDocument
from pymongo import ASCENDING, DESCENDING, ReadPreference, WriteConcern
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from fleet.constants import BETS, BETS_DONE, META, META_FULL_REPAIR, REFUSALS, TRANSITIONS
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
from fleet.ledger.tally import Tally
from fleet.store import Document, clock, store_kind, translated

logger = logging.getLogger(__name__)

#: How often one call re-reads and rewrites a projection that other writers keep moving;
#: past that, the newer writers' own repairs take over.
MAX_ROLL_FORWARD = 8


class Ledger:
    """Records, projections and refusals of one database; safe to share between threads."""

    def __init__(
        self, db: Database[Document], terminal: frozenset[str] = frozenset(), tally: Tally | None = None
    ) -> None:
        """``terminal``: the stages whose projections go to ``BETS_DONE`` (the pipeline's).
        A ledger that does not know them keeps every projection in ``BETS``: still correct,
        only the working set is bigger."""
        self.db = db
        self.clock = clock(db)
        self.terminal = terminal
        self._tally = tally

    @cached_property
    def tally(self) -> Tally:
        """The running counts (see :mod:`fleet.ledger.tally`), kept as records are committed."""
        return self._tally or Tally.for_db(self.db)

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

    def counted(self, record: TransitionRecord) -> None:
        """Count a just-committed and projected record in the running tally (never raises)."""
        self.tally.count(record, self.record)

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
        """Replace (or create) the bet's projection with ``bet``; a finished bet leaves ``BETS``."""
        doc = projection_doc(bet)
        done = bet.stage in self.terminal
        with translated("ledger: writing a projection"):
            self._replace(BETS_DONE if done else BETS, doc)
            if done:
                self.db[BETS].delete_one({"_id": bet.bet_id})

    def _replace(self, collection: str, doc: Document) -> None:
        try:
            self.db[collection].replace_one({"_id": doc["_id"]}, doc, upsert=True)
        except DuplicateKeyError:
            # Two upserts of a missing projection raced and ours tried to insert second.
            self.db[collection].replace_one({"_id": doc["_id"]}, doc)

    def projection(self, bet_id: str) -> Bet | None:
        """The bet's projection, or None; :class:`CorruptBet` if it does not parse."""
        doc = self._projection_doc(bet_id)
        return None if doc is None else parse_projection(doc)

    def _projection_doc(self, bet_id: str) -> Document | None:
        """The live projection, else the finished one: two ``_id`` reads at most."""
        with translated("ledger: reading a projection"):
            return self.db[BETS].find_one({"_id": bet_id}) or self.db[BETS_DONE].find_one({"_id": bet_id})

    def raw_projections(self, bet_id: str | None = None) -> dict[str, Document]:
        """Projection documents as stored (unparsed) by bet id, of one bet or of all (both sets).

        Where a bet has both (a lagging write put it back into ``BETS``), the higher seq wins.
        """
        if bet_id is not None:
            doc = self._projection_doc(bet_id)
            return {} if doc is None else {bet_id: doc}
        found: dict[str, Document] = {}
        with translated("ledger: reading projections"):
            for collection in (BETS_DONE, BETS):
                for doc in self.db[collection].find({}):
                    key, old = str(doc["_id"]), found.get(str(doc["_id"]))
                    if old is None or _seq_of(doc) > _seq_of(old):
                        found[key] = doc
        return found

    def live_projections(self) -> list[Document]:
        """Every ``BETS`` document (the live work): what the incremental repair walks."""
        with translated("ledger: reading projections"):
            return list(self.db[BETS].find({}))

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
            self.tally.count_through(bet_id, bet.seq, self.record)
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
        """Roll forward every missing, lagging or unreadable projection; return how many.

        Reads every record (history): ``fleet repair --full`` and verify's repair. The
        watchdog's sweep is :meth:`repair_live`.
        """
        projected = self.raw_projections()
        repaired = 0
        for bet_id, (seq, stage) in self.last_stages().items():
            if _needs_repair(projected.get(bet_id), seq, stage):
                repaired += self._repair(bet_id, seq)
        return repaired

    def repair_live(self) -> int:
        """Roll forward the live projections that lag (one ``_id`` read each); return how many.

        Costs the live work, not the history: a finished bet's projection cannot lag behind a
        record (terminal stages have no edges), and a bet put back by a lagging write is live.
        A live projection already at a terminal stage (a store written before finished bets
        moved out, or a lagging write) is moved to ``BETS_DONE``: that is the migration.
        """
        repaired = 0
        for doc in self.live_projections():
            bet_id, seq = str(doc["_id"]), _seq_of(doc)
            if seq < 0 or self.has_record(bet_id, seq + 1) or not _parses(doc):
                repaired += self._repair(bet_id, max(seq, 0))
            elif doc.get("stage") in self.terminal:
                self.project(parse_projection(doc))
        return repaired

    def sweep(self, full_every: timedelta) -> int:
        """The watchdog's repair: the live projections every run, every record once per ``full_every``.

        The full pass catches what no live read can see (a creation whose writer died
        between its record and its projection, with no redelivery to replay it).
        """
        with translated("ledger: reading the last full repair"):
            last = (self.db[META].find_one({"_id": META_FULL_REPAIR}) or {}).get("at")
        now = self.now()
        if isinstance(last, datetime) and _aware(last) > now - full_every:
            return self.repair_live()
        repaired = self.repair_all() + self.repair_live()
        with translated("ledger: noting a full repair"):
            self._replace(META, {"_id": META_FULL_REPAIR, "at": now})
        return repaired

    def unmigrated(self) -> int:
        """Finished bets whose projection is still in ``BETS`` (a store from before the split)."""
        if not self.terminal:
            return 0
        with translated("ledger: counting finished projections"):
            return int(self.db[BETS].count_documents({"stage": {"$in": sorted(self.terminal)}}))

    def migrate(self, progress: Callable[[int], None] | None = None) -> int:
        """Move every finished bet's projection from ``BETS`` to ``BETS_DONE``; return how many.

        Idempotent and safe beside running workers: each move writes the finished copy before
        it deletes the live one, and a reader looks in both.
        """
        moved = 0
        with translated("ledger: reading finished projections"):
            docs = list(self.db[BETS].find({"stage": {"$in": sorted(self.terminal)}}))
        for doc in docs:
            with translated("ledger: moving a finished projection"):
                self._replace(BETS_DONE, doc)
                self.db[BETS].delete_one({"_id": doc["_id"]})  # a finished bet does not move
            moved += 1
            if progress and moved % 1000 == 0:
                progress(moved)
        return moved

    def _repair(self, bet_id: str, seq: int) -> int:
        try:
            return int(self.roll_forward(bet_id, seq)[1])
        except CorruptBet as exc:  # verify() reports it; repairing the rest matters more
            logger.warning("cannot repair a bet: %s", exc)
        except UnknownBet:
            logger.warning("a projection without records: %s (verify reports it)", bet_id)
        return 0

    # --- refusals -------------------------------------------------------------------

    def refuse(self, refusal: Refusal) -> None:
        """Store one refused attempt (an insert: never lost to a race)."""
        with translated("ledger: recording a refusal"):
            result = self.db[REFUSALS].insert_one(refusal.model_dump())
        self.tally.count_refusal(str(result.inserted_id), refusal.agent, refusal.reason, refusal.at)

    def refusals(self, bet_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Refusal documents (without ``_id``), newest first."""
        if limit <= 0:
            return []
        query: Document = {} if bet_id is None else {"bet_id": bet_id}
        order = [("at", DESCENDING), ("_id", DESCENDING)]
        with translated("ledger: reading refusals"):
            return [dict(doc) for doc in self.db[REFUSALS].find(query, {"_id": 0}).sort(order).limit(limit)]


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _seq_of(doc: Document) -> int:
    seq = doc.get("seq")
    return seq if isinstance(seq, int) else -1


def _parses(doc: Document) -> bool:
    try:
        parse_projection(doc)
    except CorruptBet:
        return False
    return True


def _needs_repair(doc: Document | None, seq: int, stage: str) -> bool:
    """A cheap pre-filter: missing, unreadable or not at the last record's seq and stage."""
    if doc is None:
        return True
    try:
        bet = parse_projection(doc)
    except CorruptBet:
        return True
    return (bet.seq, bet.stage) != (seq, stage)
