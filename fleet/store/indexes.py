"""Every index fleet relies on, created idempotently before a worker takes its first task.

On MongoDB these are ordinary ``create_index`` calls, plus TTL indexes for the
collections that are pruned by age alone (see :mod:`fleet.ops.retention`).

On FerretDB v1 with its SQLite backend, the only filter the server turns into SQL is
``{"_id": <string>}``, which it writes as ``_ferretdb_sjson->'$._id' = ?``; every other
filter is applied in Go after reading the whole table. FerretDB's own unique ``_id``
index is on a different expression (``_ferretdb_sjson->"_id"``), so SQLite cannot use
it and every ``_id`` find, update and delete scans the table (an update by ``_id`` falls
from ~400/s at 100 documents to ~5/s at 20,000). When fleet knows the SQLite folder of
the FerretDB it talks to (``FLEET_STORE_SQLITE_DIR``, set for the local one), it adds
an index on the exact expression the generated SQL uses, in FerretDB's own data file.
This depends on FerretDB internals (v1.24.2): ``tests/store/test_indexes.py`` reads the
query plan, so an upgrade that changes the SQL fails loudly instead of getting slow.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import CollectionInvalid, OperationFailure

from fleet.constants import COLLECTIONS, INDEXES, SQLITE_ID_EXPRESSION, SQLITE_ID_INDEX, TTL_FIELDS
from fleet.errors import LedgerUnavailable, first_line
from fleet.settings import Settings, get_settings
from fleet.store.connection import Document, store_kind
from fleet.store.errors import translated

#: MongoDB's (and FerretDB's) error code for "collection already exists".
NAMESPACE_EXISTS = 48

#: Seconds SQLite waits for FerretDB's write lock while adding an index.
SQLITE_BUSY_TIMEOUT_S = 30.0


def ensure_indexes(db: Database[Document], settings: Settings | None = None) -> None:
    """Create every index fleet relies on (idempotent); see the module docstring.

    From ``settings`` (default: the process's): the SQLite folder of the FerretDB behind
    ``db`` if fleet knows it, and the retention window (TTL indexes, MongoDB only).
    """
    settings = settings or get_settings()
    sqlite_dir, retention_s = settings.sqlite_dir, settings.retention_days * 86400
    kind = store_kind(db)
    with translated("creating indexes"):
        existing = set(db.list_collection_names())
        for collection in COLLECTIONS:
            if collection not in existing:
                # A collection with no index of its own still needs its table (and _id index).
                _create_collection(db, collection)
            for name, keys, unique in INDEXES.get(collection, []):
                spec = [(field, ASCENDING if d == 1 else d) for field, d in keys]
                db[collection].create_index(spec, name=name, unique=unique)
            if not kind.ferretdb and collection in TTL_FIELDS:
                _ttl_index(db, collection, TTL_FIELDS[collection], int(retention_s))
    if kind.ferretdb and sqlite_dir is not None:
        add_sqlite_id_indexes(sqlite_dir / f"{db.name}.sqlite")


def _create_collection(db: Database[Document], collection: str) -> None:
    try:
        db.create_collection(collection)
    except CollectionInvalid:
        return  # listed by now: another process created it after our listing
    except OperationFailure as exc:
        if exc.code != NAMESPACE_EXISTS:  # the same race, seen by the server instead
            raise


def _ttl_index(db: Database[Document], collection: str, field: str, seconds: int) -> None:
    name = f"ttl_{field}"
    try:
        db[collection].create_index([(field, ASCENDING)], name=name, expireAfterSeconds=seconds)
    except OperationFailure:
        # The window changed since the index was made: change the index, not the data.
        db.command("collMod", collection, index={"name": name, "expireAfterSeconds": seconds})


def add_sqlite_id_indexes(data_file: Path) -> list[str]:
    """Index the ``_id`` expression FerretDB's SQL filters on, for every collection table
    in ``data_file``; return the tables indexed. A missing file is a configuration error."""
    if not data_file.is_file():
        raise LedgerUnavailable(
            f"FLEET_STORE_SQLITE_DIR: no FerretDB data file {data_file} (is it the folder of this store?)"
        )
    try:
        with sqlite3.connect(data_file, timeout=SQLITE_BUSY_TIMEOUT_S) as conn:
            tables = [row[0] for row in conn.execute('SELECT table_name FROM "_ferretdb_collections"')]
            for table in tables:
                index = f"{table}{SQLITE_ID_INDEX}"
                conn.execute(f'CREATE INDEX IF NOT EXISTS "{index}" ON "{table}" ({SQLITE_ID_EXPRESSION})')
        conn.close()
    except sqlite3.Error as exc:
        raise LedgerUnavailable(f"cannot index FerretDB's data file {data_file}: {first_line(exc)}") from None
    return tables
