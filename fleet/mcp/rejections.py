"""Calls refused because their token did not verify: stored apart, bounded, counted per source.

Whoever sends such a call is not known to be the agent its token names, so nothing of it
is attributed to that agent: it is not a refusal of the agent (``REFUSALS`` and with them
refusal loops and holds never see it), it is a signal of its own, "someone is trying to
be X". Each goes to ``REJECTED_TOKENS`` as one of two kinds of document:

- ``call``: one refused call (claimed name, source address, tool, reason), the first
  ``FLEET_MCP_REJECTIONS_PER_MIN`` per source and minute only, so a flood cannot fill
  the store;
- ``limit``: per source and minute, how many were refused in all once past the limit
  (those past it are counted here only).

Every string kept from such a call is cut to a fixed length.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from pymongo.database import Database

from fleet.constants import REJECTED_TOKENS
from fleet.errors import TokenRejected
from fleet.mcp.tokens import MAX_CLAIMED_CHARS, cap
from fleet.store import Document, reading, translated

#: Longest source address, tool name, bet id or stage kept from an unauthenticated call.
MAX_FIELD_CHARS = 200
#: Longest refusal reason kept.
MAX_REASON_CHARS = 300
#: Sources counted in memory at once; past that the counts
#: start over (a flood of addresses is still refused, and counted from then on).
MAX_SOURCES = 10_000
#: The claimed name stored when the token names none (or there was no token).
NO_CLAIM = "(none)"
CALL, LIMIT = "call", "limit"
#: The claimed name shown for calls past a source's limit (counted, never stored one by one).
OVER_LIMIT = "(over the limit: counted only)"


class RejectedToken(BaseModel):
    """Calls with a bad token that claimed one name, from one source, in a window."""

    claimed_agent: str
    source: str
    count: int
    last_at: datetime


class Rejections:
    """Storing refused unauthenticated calls: each counted, the first few per source kept.

    The per-minute counts live in this process (exact: one lock), and each ``limit``
    document has one writer, this process (its ``instance`` is in the ``_id``): FerretDB's
    read-modify-write updates are not atomic, so a shared counter would lose counts under
    concurrent calls. Readers add up every instance's documents. The limit holds per
    server process.
    """

    def __init__(self, db: Database[Document], per_minute: int) -> None:
        self.db = db
        self.per_minute = per_minute
        self.instance = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._minute: tuple[datetime, dict[str, int]] = (datetime.min.replace(tzinfo=UTC), {})

    def record(
        self, exc: TokenRejected, source: str, call: dict[str, Any], *, now: datetime | None = None
    ) -> bool:
        """Count the refused call; store it one by one unless ``source`` is over its limit
        this minute. True when it was stored."""
        now = now or datetime.now(UTC)
        claimed = cap(exc.agent, MAX_CLAIMED_CHARS) if exc.agent else NO_CLAIM
        source = cap(source, MAX_FIELD_CHARS)
        with self._lock:
            minute, n = self._tick_minute(now, source)
            if n > self.per_minute:  # past the limit: the source's counter only
                fresh = {"kind": LIMIT, "source": source, "at": minute, "limit": self.per_minute}
                self._put(f"{LIMIT}:{minute.isoformat()}:{self.instance}:{source}", fresh, n, now)
                return False
            doc = {"kind": CALL, "claimed_agent": claimed, "source": source, "at": now,
                   "reason": cap(exc.reason, MAX_REASON_CHARS), **_bounded(call)}  # fmt: skip
            with translated("rejected tokens: storing"):
                self.db[REJECTED_TOKENS].insert_one(doc)
            return True

    def _tick_minute(self, now: datetime, source: str) -> tuple[datetime, int]:
        minute = now.replace(second=0, microsecond=0)
        if self._minute[0] != minute or len(self._minute[1]) >= MAX_SOURCES:
            self._minute = (minute, {})  # a new minute (or a flood of sources): counts start over
        seen = self._minute[1]
        seen[source] = seen.get(source, 0) + 1
        return minute, seen[source]

    def _put(self, key: str, fresh: Document, count: int, now: datetime) -> None:
        """Write this process's count for ``key`` (only this process writes it)."""
        with translated("rejected tokens: counting"):
            self.db[REJECTED_TOKENS].replace_one(
                {"_id": key}, {**fresh, "count": count, "last_at": now}, upsert=True
            )


def _bounded(call: dict[str, Any]) -> dict[str, Any]:
    """The call's tool, bet, target stage and seq, each capped (or dropped when not plain)."""
    out: dict[str, Any] = {}
    for name in ("method", "tool", "bet_id", "to_stage"):
        value = call.get(name)
        if isinstance(value, str):
            out[name] = cap(value, MAX_FIELD_CHARS)
    seq = call.get("expected_seq")
    if isinstance(seq, int) and not isinstance(seq, bool) and abs(seq) < 2**53:
        out["expected_seq"] = seq
    return out


def call_of(body: bytes) -> dict[str, Any]:
    """What a JSON-RPC request body asked for (method, tool and its bet, stage and seq),
    for recording a refusal; empty when the body is not a request."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if isinstance(message, list):
        message = message[0] if message else {}
    if not isinstance(message, dict):
        return {}
    params = message.get("params")
    params = params if isinstance(params, dict) else {}
    args = params.get("arguments")
    args = args if isinstance(args, dict) else {}
    return {"method": message.get("method"), "tool": params.get("name"), **args}


def rejected_tokens(db: Database[Document], since: datetime, limit: int = 20) -> list[RejectedToken]:
    """Calls refused for a bad token since ``since``, per claimed name and source, most first
    (calls past a source's limit under the claimed name :data:`OVER_LIMIT`)."""
    totals: Totals = {}
    fields = {
        "_id": 0,
        "kind": 1,
        "claimed_agent": 1,
        "source": 1,
        "at": 1,
        "count": 1,
        "limit": 1,
        "last_at": 1,
    }
    minute = since.replace(second=0, microsecond=0)
    with reading(REJECTED_TOKENS):
        docs = list(db[REJECTED_TOKENS].find({"at": {"$gte": minute}}, fields))
    for doc in docs:
        at, last = doc.get("at"), doc.get("last_at")
        if doc.get("kind") == CALL and isinstance(at, datetime):
            _add(totals, str(doc.get("claimed_agent")), str(doc.get("source")), 1, at)
        elif doc.get("kind") == LIMIT and isinstance(last, datetime):
            over = _int(doc.get("count")) - _int(doc.get("limit"))
            if over > 0:
                _add(totals, OVER_LIMIT, str(doc.get("source")), over, last)
    return sorted(totals.values(), key=lambda r: (-r.count, r.claimed_agent, r.source))[:limit]


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


Totals = dict[tuple[str, str], RejectedToken]


def _add(totals: Totals, claimed: str, source: str, n: int, last: datetime) -> None:
    last = last.replace(tzinfo=UTC) if last.tzinfo is None else last
    seen = totals.get((claimed, source))
    if seen is None:
        totals[(claimed, source)] = RejectedToken(claimed_agent=claimed, source=source, count=n, last_at=last)
    else:
        seen.count += n
        seen.last_at = max(seen.last_at, last)


#: How far back ``fleet status`` and the console count rejected tokens.
REJECTED_WINDOW = timedelta(hours=24)
