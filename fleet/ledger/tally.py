"""Running counts of the ledger, kept in Redis as records are committed: reads that cost O(1).

Operators read aggregates of history: bets per stage, transitions per edge in total and per
recent minute, refusals per agent and reason. Recomputing them from ``TRANSITIONS`` costs
the whole history on every read (FerretDB v1 reads whole tables for any filter but ``_id``
equality, and has no usable ``$group`` index). So the writers count as they go:

- Why Redis and not the store: FerretDB v1 applies update filters non-atomically, so a
  ``$inc`` by two writers at once can lose one; Redis runs each count as one script,
  atomically, on every deployment. Redis can lose its keys (a restart without
  persistence, a failover): then the counts are rebuilt from the ledger, which stays the
  truth (see :meth:`Tally.rebuild`), on the next read or by ``fleet tally --rebuild``.
- Idempotent per bet: the tally keeps, per bet, the seq and stage it last counted. A
  record at or below it is not counted again (a retried heartbeat, a repair, a rebuild's
  catch-up); a record past a gap first counts the missing ones, read back by ``_id``. So a
  writer killed between commit and count is caught up by the bet's next count or repair.
- Refusals are inserts; each is counted once by its ``_id`` (a marker with a TTL).

A count that fails (Redis unreachable) never fails the move it counts: the ledger is
committed already. ``fleet tally --check`` compares the counts with a recount.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import redis
from pymongo.database import Database

from fleet.constants import REFUSALS, TALLY_KEY, TALLY_LOCK_KEY, TRANSITIONS
from fleet.errors import FleetError
from fleet.settings import get_settings
from fleet.store import Document, redis_client, translated, utc_ms

logger = logging.getLogger(__name__)

#: Separates the parts of a compound hash field (no stage, agent or reason contains it).
SEP = "\x1f"
#: How long per-minute buckets are kept: the longest window read (24 h) and some slack.
MINUTE_TTL_S = 26 * 3600
#: How long a counted refusal's marker is kept (a rebuild's catch-up looks back less).
MARKER_TTL_S = 3600
#: How far back a rebuild re-counts idempotently what may have landed during its scan.
CATCH_UP = timedelta(minutes=5)
#: A rebuild waits this long for another process's rebuild before doing its own.
REBUILD_LOCK_S = 300

#: KEYS: per-bet, stages, edges, minute bucket. ARGV: bet, seq, to, edge field, flow field,
#: bucket TTL, force. Returns -2 counted, -1 counted before, or the last seq counted (a gap).
_COUNT_RECORD = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local seq = tonumber(ARGV[2])
local have, old = -1, false
if cur then
  local at = string.find(cur, ARGV[8], 1, true)
  have = tonumber(string.sub(cur, 1, at - 1))
  old = string.sub(cur, at + 1)
end
if seq <= have then return -1 end
if seq > have + 1 and ARGV[7] ~= '1' then return have end
if old then redis.call('HINCRBY', KEYS[2], old, -1) end
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ARGV[8] .. ARGV[3])
redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('HINCRBY', KEYS[4], ARGV[5], 1)
redis.call('EXPIRE', KEYS[4], ARGV[6])
return -2
"""

#: KEYS: marker, totals, minute bucket. ARGV: totals field, marker TTL, bucket TTL.
_COUNT_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 1
"""

Fetch = Callable[[str, int], Any]


@dataclass(frozen=True)
class EdgeCount:
    """Transitions along one edge by one agent (``source`` is ``""`` for a creation)."""

    source: str
    dest: str
    agent: str
    kind: str


@dataclass(frozen=True)
class Counted:
    """The fields of a record the tally counts by: read from a raw document, so a record whose
    other fields are damaged (verify reports it) still counts where it moved the bet."""

    bet_id: str
    seq: int
    from_stage: str | None
    to_stage: str
    agent: str
    kind: str
    at: datetime

    @classmethod
    def of(cls, doc: Document) -> Counted | None:
        bet_id, seq, to_stage, at = doc.get("bet_id"), doc.get("seq"), doc.get("to_stage"), doc.get("at")
        if not (isinstance(bet_id, str) and isinstance(seq, int) and isinstance(to_stage, str)):
            return None
        source = doc.get("from_stage")
        when = _aware(at) if isinstance(at, datetime) else datetime.now(UTC)
        kind = str(doc.get("kind") or "create")
        return cls(
            bet_id,
            seq,
            source if isinstance(source, str) else None,
            to_stage,
            str(doc.get("agent")),
            kind,
            when,
        )


def minute_of(at: datetime) -> int:
    """The epoch minute of ``at`` (the bucket a count lands in)."""
    return int(at.timestamp() // 60)


def _edge_field(source: str | None, dest: str, agent: str, kind: str) -> str:
    return SEP.join((source or "", dest, agent, kind))


def _flow_field(source: str | None, dest: str, kind: str) -> str:
    return SEP.join((source or "", dest, kind))


class Tally:
    """The counts of one database, in one Redis; safe to share between threads."""

    def __init__(self, db: Database[Document], client: redis.Redis) -> None:
        self.db = db
        self.redis = client
        self.prefix = TALLY_KEY.format(db=db.name)
        self._count_record = client.register_script(_COUNT_RECORD)
        self._count_once = client.register_script(_COUNT_ONCE)
        self._checked = threading.Event()

    @classmethod
    def for_db(cls, db: Database[Document]) -> Tally:
        """The tally of ``db`` on the fleet's Redis (``FLEET_BROKER_URL``), one client per process."""
        return cls(db, _client(get_settings().broker_url))

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    # --- counting (writers) -------------------------------------------------------

    def count(self, record: Any, fetch: Fetch) -> None:
        """Count a committed record (a :class:`~fleet.ledger.records.TransitionRecord`) once."""
        try:
            self._count(record, fetch, self.redis)
        except (redis.RedisError, FleetError) as exc:  # the move is committed: never fail it here
            logger.warning("tally: not counted (%s); `fleet tally --rebuild` recounts", exc)

    def count_through(self, bet_id: str, seq: int, fetch: Fetch) -> None:
        """Count the bet's records up to ``seq`` that are not counted yet (a repair's catch-up)."""
        record = fetch(bet_id, seq)
        if record is not None:
            self.count(record, fetch)

    def _count(self, record: Any, fetch: Fetch, client: Any, prefix: str | None = None) -> None:
        for _ in range(2):  # once, or once more after filling a gap
            have = self._script(self._count_record, record, client, prefix, force=False)
            if have < 0:
                return
            for seq in range(have + 1, record.seq):
                missing = fetch(record.bet_id, seq)
                if missing is None:
                    break  # an unreadable record (verify reports it): count what there is
                self._script(self._count_record, missing, client, prefix, force=True)
        self._script(self._count_record, record, client, prefix, force=True)

    def _script(self, script: Any, record: Any, client: Any, prefix: str | None, *, force: bool) -> int:
        pre = prefix or self.prefix
        keys = [f"{pre}:bets", f"{pre}:stages", f"{pre}:edges", f"{pre}:flow:{minute_of(record.at)}"]
        args = [
            record.bet_id,
            record.seq,
            record.to_stage,
            _edge_field(record.from_stage, record.to_stage, record.agent, record.kind),
            _flow_field(record.from_stage, record.to_stage, record.kind),
            MINUTE_TTL_S,
            "1" if force else "0",
            SEP,
        ]
        return int(script(keys=keys, args=args, client=client))

    def count_refusal(self, refusal_id: str, agent: str, reason: str, at: datetime) -> None:
        """Count one stored refusal (once per ``refusal_id``)."""
        try:
            self._refusal(refusal_id, agent, reason, at, self.redis, self.prefix)
        except redis.RedisError as exc:
            logger.warning("tally: refusal not counted (%s)", exc)

    def _refusal(self, refusal_id: str, agent: str, reason: str, at: datetime, client: Any, pre: str) -> None:
        keys = [f"{pre}:counted:{refusal_id}", f"{pre}:refusals", f"{pre}:refused:{minute_of(at)}"]
        args: list[str | int] = [SEP.join((agent, reason)), MARKER_TTL_S, MINUTE_TTL_S]
        self._count_once(keys=keys, args=args, client=client)

    # --- reading ------------------------------------------------------------------

    def stage_counts(self) -> dict[str, int]:
        """Bets per stage (every bet ever created, at its current stage)."""
        raw = self._read(lambda: self.redis.hgetall(self.key("stages")))
        return {_s(k): int(v) for k, v in raw.items() if int(v) > 0}

    def edge_totals(self) -> Counter[EdgeCount]:
        """Every accepted transition ever recorded, by edge, agent and kind."""
        raw = self._read(lambda: self.redis.hgetall(self.key("edges")))
        return Counter({EdgeCount(*_s(k).split(SEP)): int(v) for k, v in raw.items()})

    def refusal_totals(self) -> Counter[tuple[str, str]]:
        """Stored refusals ever counted, by (agent, reason)."""
        raw = self._read(lambda: self.redis.hgetall(self.key("refusals")))
        return Counter({tuple(_s(k).split(SEP, 1)): int(v) for k, v in raw.items()})  # type: ignore[misc]

    def flow_since(self, since: datetime, now: datetime) -> Counter[tuple[str, str, str]]:
        """Transitions per (source, dest, kind) in the minutes from ``since`` to ``now``."""
        return Counter({tuple(k.split(SEP)): n for k, n in self._minutes("flow", since, now).items()})  # type: ignore[misc]

    def refused_since(self, since: datetime, now: datetime) -> int:
        """Refusals counted in the minutes from ``since`` to ``now``."""
        return sum(self._minutes("refused", since, now).values())

    def _minutes(self, name: str, since: datetime, now: datetime) -> Counter[str]:
        """Per-minute buckets summed over [since, now], whole minutes (the window is rounded out).

        Buckets older than :data:`MINUTE_TTL_S` are gone: a longer window counts that much only.
        """
        last = minute_of(now)
        first = max(minute_of(since), last - MINUTE_TTL_S // 60 + 1)

        def read() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for minute in range(first, last + 1):
                pipe.hgetall(self.key(f"{name}:{minute}"))
            return list(pipe.execute())

        total: Counter[str] = Counter()
        for bucket in self._read(read):
            total.update({_s(k): int(v) for k, v in bucket.items()})
        return total

    def _read(self, read: Callable[[], Any]) -> Any:
        """Read after making sure the counts exist (rebuilt from the ledger if Redis lost them)."""
        with translated("tally: reading counts"):
            if not self._checked.is_set() or not self.redis.exists(self.key("built")):
                self.ensure_built()
            return read()

    # --- rebuilding ---------------------------------------------------------------

    def built_at(self) -> str | None:
        """When the counts were last rebuilt from the ledger, or None if they are missing."""
        with translated("tally: reading counts"):
            value = self.redis.get(self.key("built"))
        return None if value is None else _s(value)

    def ensure_built(self) -> None:
        """Rebuild the counts if Redis does not hold them (one process rebuilds, the rest wait)."""
        if not self.redis.exists(self.key("built")):
            with self.redis.lock(
                TALLY_LOCK_KEY.format(db=self.db.name),
                timeout=REBUILD_LOCK_S,
                blocking_timeout=REBUILD_LOCK_S,
            ):
                if not self.redis.exists(self.key("built")):
                    self.rebuild()
        self._checked.set()

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Recount everything from the ledger into fresh keys, swap them in; return records read.

        Writers keep counting into the old keys meanwhile; what they counted after the scan
        began is counted again, idempotently, by a catch-up over the last minutes.
        """
        started = datetime.now(UTC) - CATCH_UP
        staging = f"{self.prefix}:rebuild"
        self._drop(staging)
        records = self._recount(staging, progress)
        self._swap(staging)
        self._catch_up(utc_ms(started))
        self.redis.set(self.key("built"), datetime.now(UTC).isoformat())
        return records

    def _recount(self, staging: str, progress: Callable[[int], None] | None) -> int:
        last: dict[str, Counted] = {}
        edges: Counter[str] = Counter()
        flows: dict[int, Counter[str]] = {}
        horizon = minute_of(datetime.now(UTC)) - MINUTE_TTL_S // 60
        read = 0
        with translated("tally: reading records"):
            for doc in self.db[TRANSITIONS].find({}):
                read += 1
                if progress and read % 10_000 == 0:
                    progress(read)
                if (record := Counted.of(doc)) is None:
                    continue  # an unreadable record is verify's to report
                edges[_edge_field(record.from_stage, record.to_stage, record.agent, record.kind)] += 1
                if (minute := minute_of(record.at)) >= horizon:
                    flow = _flow_field(record.from_stage, record.to_stage, record.kind)
                    flows.setdefault(minute, Counter())[flow] += 1
                if record.bet_id not in last or record.seq > last[record.bet_id].seq:
                    last[record.bet_id] = record
        stages = Counter(record.to_stage for record in last.values())
        pipe = self.redis.pipeline(transaction=False)
        _hset(pipe, f"{staging}:bets", {b: f"{r.seq}{SEP}{r.to_stage}" for b, r in last.items()})
        _hset(pipe, f"{staging}:stages", stages)
        _hset(pipe, f"{staging}:edges", edges)
        for minute, counts in flows.items():
            _hset(pipe, f"{staging}:flow:{minute}", counts, MINUTE_TTL_S)
        self._recount_refusals(pipe, staging, horizon)
        pipe.execute()
        return read

    def _recount_refusals(self, pipe: Any, staging: str, horizon: int) -> None:
        totals: Counter[str] = Counter()
        minutes: dict[int, Counter[str]] = {}
        with translated("tally: reading refusals"):
            for doc in self.db[REFUSALS].find({}, {"agent": 1, "reason": 1, "at": 1}):
                field = SEP.join((str(doc.get("agent")), str(doc.get("reason"))))
                totals[field] += 1
                at = doc.get("at")
                if isinstance(at, datetime) and (minute := minute_of(_aware(at))) >= horizon:
                    minutes.setdefault(minute, Counter())[field] += 1
        _hset(pipe, f"{staging}:refusals", totals)
        for minute, counts in minutes.items():
            _hset(pipe, f"{staging}:refused:{minute}", counts, MINUTE_TTL_S)

    def _swap(self, staging: str) -> None:
        """Put the staged counts in place of the live ones (each key by one RENAME)."""
        staged = list(self.redis.scan_iter(match=f"{staging}:*", count=1000))
        self._drop(self.prefix, keep=staging)
        pipe = self.redis.pipeline(transaction=True)
        for key in staged:
            name = _s(key)
            pipe.rename(name, self.prefix + name[len(staging) :])
        pipe.execute()

    def _catch_up(self, since: datetime) -> None:
        """Count again (idempotently) what writers may have counted into the old keys mid-scan."""

        def fetch(bet_id: str, seq: int) -> Counted | None:
            return Counted.of(self.db[TRANSITIONS].find_one({"_id": f"{bet_id}:{seq}"}) or {})

        with translated("tally: catching up"):
            recent = sorted(self.db[TRANSITIONS].find({"at": {"$gte": since}}), key=_doc_seq)
            for record in filter(None, map(Counted.of, recent)):
                self._count(record, fetch, self.redis)

    def _drop(self, prefix: str, keep: str | None = None) -> None:
        for key in self.redis.scan_iter(match=f"{prefix}:*", count=1000):
            name = _s(key)
            kept = keep is not None and name.startswith(keep + ":")
            if not kept and not name.startswith(f"{self.prefix}:counted:"):
                self.redis.delete(name)

    def check(self) -> list[str]:
        """Differences between the counts and a fresh recount from the ledger (none: they agree).

        Writers committing meanwhile can show as a difference of a move or two: check a quiet
        fleet, or check again.
        """
        staging = f"{self.prefix}:check"
        with translated("tally: reading counts"):
            self.ensure_built()  # first: a rebuild's swap drops every other key of the tally
        self._drop(staging)
        try:
            self._recount(staging, None)
            with translated("tally: reading counts"):
                return [
                    f"{name} {_show(field)}: counted {have}, recount {want}"
                    for name in ("stages", "edges", "refusals")
                    for field, have, want in _differences(
                        self.redis.hgetall(self.key(name)), self.redis.hgetall(f"{staging}:{name}")
                    )
                ]
        finally:
            self._drop(staging)

    def forget(self) -> None:
        """Drop every count (tests, and an operator who wants the next read to rebuild)."""
        self._drop(self.prefix)
        self.redis.delete(self.key("built"))
        self._checked.clear()


def _hset(pipe: Any, key: str, values: dict[str, Any] | Counter[str], ttl: int | None = None) -> None:
    items = {k: v for k, v in values.items()}
    for start in range(0, len(items), 5000):
        chunk = dict(list(items.items())[start : start + 5000])
        pipe.hset(key, mapping=chunk)
    if ttl and items:
        pipe.expire(key, ttl)


def _differences(have: dict[Any, Any], want: dict[Any, Any]) -> list[tuple[str, int, int]]:
    counted = {_s(k): int(v) for k, v in have.items() if int(v)}
    recount = {_s(k): int(v) for k, v in want.items() if int(v)}
    fields = sorted(set(counted) | set(recount))
    pairs = [(f, counted.get(f, 0), recount.get(f, 0)) for f in fields]
    return [(f, have, want) for f, have, want in pairs if have != want]


def _show(field: str) -> str:
    return " ".join(part or "-" for part in field.split(SEP))


def _doc_seq(doc: Document) -> int:
    seq = doc.get("seq")
    return seq if isinstance(seq, int) else 0


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@cache
def _client(url: str) -> redis.Redis:
    return redis_client(url)


def recount(records: Iterable[Any]) -> Counter[EdgeCount]:
    """Transitions by edge from ``records`` (parsed): what ``--check`` compares the tally with."""
    return Counter(EdgeCount(r.from_stage or "", r.to_stage, r.agent, r.kind) for r in records)
