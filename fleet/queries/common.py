"""What every read-side query shares: frozen models, store reads, stored dates."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo.database import Database

from fleet.store import reading

Doc = dict[str, Any]


class Model(BaseModel):
    """A query answer: frozen, dumped as is by ``--json``."""

    model_config = ConfigDict(frozen=True)


def find(db: Database[Doc], collection: str, query: Doc, fields: list[str] | None = None) -> list[Doc]:
    """Every document of ``collection`` matching ``query`` (store errors translated)."""
    with reading(collection):
        return list(db[collection].find(query, fields))


def aware(value: object) -> datetime | None:
    """A stored date as an aware UTC datetime; None if it is not a date."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
