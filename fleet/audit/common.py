"""Reads and small formatting helpers the audits share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.database import Database

from fleet.store import reading

Doc = dict[str, Any]


def find(db: Database[Doc], collection: str, query: Doc, fields: list[str] | None = None) -> list[Doc]:
    with reading(collection, source="audit"):
        return list(db[collection].find(query, fields))


def when(doc: Doc, key: str) -> datetime | None:
    """A stored date as an aware UTC datetime (None if missing or not a date)."""
    value = doc.get(key)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def seq_number(value: object) -> int:
    """A stored sequence number; -1 when it is not an int (sorts first)."""
    return value if isinstance(value, int) else -1


def hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f}h"


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
