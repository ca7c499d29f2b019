"""The store-access layer: connections, the one error translator, the one clock, indexes.

Every other module reaches MongoDB (or FerretDB) and Redis through these names, so
timeouts, error translation and time are the same everywhere.
"""

from __future__ import annotations

from fleet.store.clock import StoreClock, utc_ms
from fleet.store.connection import (
    SERVER_TIMEOUT_MS,
    Document,
    StoreKind,
    clock,
    close_clients,
    database,
    mongo_client,
    ping_mongo,
    ping_redis,
    redis_client,
    storage_problem,
    store_kind,
)
from fleet.store.errors import UNAVAILABLE_ERRORS, reading, translated
from fleet.store.indexes import add_sqlite_id_indexes, ensure_indexes

__all__ = [
    "SERVER_TIMEOUT_MS",
    "UNAVAILABLE_ERRORS",
    "Document",
    "StoreClock",
    "StoreKind",
    "add_sqlite_id_indexes",
    "clock",
    "close_clients",
    "database",
    "ensure_indexes",
    "mongo_client",
    "ping_mongo",
    "ping_redis",
    "reading",
    "redis_client",
    "storage_problem",
    "store_kind",
    "translated",
    "utc_ms",
]
