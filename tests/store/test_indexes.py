"""Indexes exist before work starts, and FerretDB's own SQL uses the ``_id`` index fleet adds."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from fleet.constants import (
    BETS,
    CLAIMS,
    COLLECTIONS,
    FERRETDB_VERSION,
    HEARTBEATS,
    SQLITE_ID_INDEX,
    TRANSITIONS,
)
from fleet.runtime.runtime import Runtime
from fleet.settings import get_settings
from fleet.store import store_kind

#: The SQL FerretDB v1.24.2's SQLite backend runs for ``find_one({"_id": x})`` and
#: ``update_one({"_id": x}, ...)`` (internal/backends/sqlite/collection.go, query.go).
FIND_BY_ID = """SELECT _ferretdb_sjson FROM "{table}" WHERE _ferretdb_sjson->'$._id' = ?"""
UPDATE_BY_ID = """UPDATE "{table}" SET _ferretdb_sjson = ? WHERE _ferretdb_sjson->'$._id' = ?"""


def data_file(db: Any) -> Path:
    sqlite_dir = get_settings().sqlite_dir
    if sqlite_dir is None:  # only with FLEET_TEST_MONGO_URL: an external store has no file to read
        pytest.skip("the store under test is not fleet's local FerretDB")
    return sqlite_dir / f"{db.name}.sqlite"


def tables(db: Any) -> dict[str, str]:
    with sqlite3.connect(data_file(db)) as conn:
        return dict(conn.execute('SELECT name, table_name FROM "_ferretdb_collections"').fetchall())


def plan(db: Any, sql: str, params: tuple[str, ...]) -> str:
    with sqlite3.connect(data_file(db)) as conn:
        return " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_the_store_is_the_ferretdb_whose_sql_these_plans_were_read_from(db) -> None:
    data_file(db)
    # An upgrade changes the SQL these tests replay: re-read FerretDB's source, then bump both.
    assert store_kind(db).ferretdb and store_kind(db).version == FERRETDB_VERSION


def test_id_lookups_and_updates_use_an_index_in_every_collection(db) -> None:
    # Given the test database with fleet's indexes (the db fixture ran ensure_indexes)
    db[BETS].insert_one({"_id": "b1", "stage": "new"})
    by_name = tables(db)
    assert set(COLLECTIONS) <= set(by_name)
    for collection in COLLECTIONS:
        table = by_name[collection]
        # When SQLite plans FerretDB's own statements for an _id filter
        found = plan(db, FIND_BY_ID.format(table=table), ('"b1"',))
        updated = plan(db, UPDATE_BY_ID.format(table=table), ("{}", '"b1"'))
        # Then both search the index fleet added instead of scanning the table
        assert f"USING INDEX {table}{SQLITE_ID_INDEX}" in found, (collection, found)
        assert f"USING INDEX {table}{SQLITE_ID_INDEX}" in updated, (collection, updated)
        assert "SCAN" not in found and "SCAN" not in updated


def test_without_the_added_index_the_same_lookup_scans(db) -> None:
    # The plan check above can fail: drop fleet's index and the same statement scans.
    table = tables(db)[TRANSITIONS]
    with sqlite3.connect(data_file(db)) as conn:
        conn.execute(f'DROP INDEX "{table}{SQLITE_ID_INDEX}"')
    assert "SCAN" in plan(db, FIND_BY_ID.format(table=table), ('"x"',))


def test_a_worker_runtime_creates_every_index_before_its_first_task(stack, redis, settings, registry) -> None:
    # Given a store with none of fleet's collections (a fresh deployment)
    from fleet.store import database

    fresh = database(settings)
    for name in fresh.list_collection_names():
        fresh.drop_collection(name)
    # When a worker process builds its runtime (before it runs any heartbeat)
    runtime = Runtime.build(settings, registry)
    runtime.pool.shutdown()
    runtime.bet_pool.shutdown()
    # Then the MongoDB indexes and FerretDB's _id expression indexes exist
    assert "stage_attempted" in fresh[BETS].index_information()
    assert "agent_started" in fresh[HEARTBEATS].index_information()
    assert "bet_seq" in fresh[CLAIMS].index_information()
    table = tables(fresh)[HEARTBEATS]
    assert f"USING INDEX {table}{SQLITE_ID_INDEX}" in plan(fresh, FIND_BY_ID.format(table=table), ('"h"',))
