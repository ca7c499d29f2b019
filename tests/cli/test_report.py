"""The read-side queries behind the CLI, over documents in the shapes the fleet writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from pymongo.database import Database

from fleet import queries
from fleet.constants import BETS, HEARTBEATS, TRANSITIONS
from fleet.definitions.catalogue import Registry
from fleet.ledger import Enforcer
from fleet.ledger.tally import Tally
from fleet.ops.procfile import procfile_queues
from fleet.store import Document

from ..conftest import Stack

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def heartbeat(hb_id: str, agent: str, start: float, end: float, **extra: object) -> Document:
    """A heartbeat record in the shape fleet.runtime.heartbeat writes."""
    return {
        "_id": hb_id,
        "agent": agent,
        "reason": "scheduled",
        "status": "ok",
        "started_at": at(start),
        "finished_at": at(end),
        "duration_s": (end - start) * 60,
        "actions": {"claimed": 1},
        "bets": [],
        "protocol_version": "1.0",
        "protocol_hash": "h",
        "worker": "w:1",
        "error": None,
        "trace": [],
        **extra,
    }


def test_overlap_peak_counts_half_open_intervals() -> None:
    # back to back is not overlap; three nested intervals are
    assert queries.overlap_peak([]) == (0, None)
    assert queries.overlap_peak([(at(0), at(1)), (at(1), at(2))]) == (1, at(0))
    spans = [(at(0), at(10)), (at(2), at(5)), (at(4), at(6)), (at(5), at(7))]
    assert queries.overlap_peak(spans) == (3, at(4))


def test_peak_concurrency_reads_heartbeat_intervals(db: Database[Document]) -> None:
    db[HEARTBEATS].insert_many(
        [
            heartbeat("a", "x", 0, 10),
            heartbeat("b", "y", 2, 5),
            heartbeat("c", "z", 4, 6),
            heartbeat("old", "z", -100, -90),
            {"_id": "running", "agent": "x", "started_at": at(3)},  # not finished: no interval
        ]
    )
    assert queries.peak_concurrency(db) == queries.Peak(peak=3, at=at(4), heartbeats=4, since=None)
    recent = queries.peak_concurrency(db, since=at(-1))
    assert (recent.peak, recent.heartbeats) == (3, 3)


def test_heartbeats_per_agent_counts_and_takes_the_latest(db: Database[Document]) -> None:
    db[HEARTBEATS].insert_many(
        [
            heartbeat("a1", "alpha", 0, 1),
            heartbeat("a2", "alpha", 5, 6, actions={"advanced": 2}, reason="adhoc"),
            heartbeat("b1", "beta", 1, 2, status="failed", error="boom"),
        ]
    )
    rows = {row.agent: row for row in queries.heartbeats_per_agent(db, ["alpha", "beta", "gamma"])}
    assert [rows[a].count for a in ("alpha", "beta", "gamma")] == [2, 1, 0]
    assert rows["alpha"].last is not None and rows["beta"].last is not None
    assert (rows["alpha"].last.heartbeat_id, rows["alpha"].last.actions) == ("a2", {"advanced": 2})
    assert (rows["beta"].last.status, rows["beta"].last.error) == ("failed", "boom")
    assert rows["gamma"].last is None


def test_bets_per_stage_lists_every_stage_then_strays(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    pipeline = registry.pipeline
    enforcer.create_bet(pipeline.creators[0], {})
    # A bet created under an older pipeline that had this stage: counted from its record.
    ghost = {"bet_id": "ghost", "seq": 0, "from_stage": None, "to_stage": "no_such_stage", "agent": "old"}
    db[TRANSITIONS].insert_one({"_id": "ghost:0", **ghost, "kind": "create", "at": datetime.now(UTC)})
    Tally.for_db(db).forget()  # the counts are rebuilt from the ledger on the next read
    rows = queries.bets_per_stage(db, pipeline)
    assert [r.stage for r in rows] == [s.name for s in pipeline.stages] + ["no_such_stage"]
    assert rows[0].count == 1 and rows[-1] == queries.StageCount(stage="no_such_stage", count=1, known=False)
    assert all(r.count == 0 for r in rows[1:-1])
    assert [r.stage for r in rows if r.terminal] == [s.name for s in pipeline.stages if s.terminal]


def test_list_bets_flags_a_corrupt_projection(db: Database[Document], registry: Registry) -> None:
    db[BETS].insert_one({"_id": "bad", "stage": registry.pipeline.initial_stage, "seq": "x"})
    [row] = queries.list_bets(db, registry.pipeline, None, 10)
    assert row.bet_id == "bad" and row.problem and "seq" in row.problem


def test_an_unknown_stage_is_refused(db: Database[Document], registry: Registry) -> None:
    with pytest.raises(queries.UnknownStage, match="unknown stage 'nope'"):
        queries.list_bets(db, registry.pipeline, "nope", 10)


def test_throughput_counts_recent_transitions_by_kind(
    db: Database[Document], enforcer: Enforcer, registry: Registry
) -> None:
    enforcer.create_bet(registry.pipeline.creators[0], {})
    stage, at = registry.pipeline.initial_stage, datetime.now(UTC) - timedelta(hours=3)
    old = {"bet_id": "old", "seq": 0, "kind": "create", "to_stage": stage, "agent": "a", "at": at}
    db[TRANSITIONS].insert_one({"_id": "old:0", **old})
    Tally.for_db(db).forget()  # a record written past the counting writers: the rebuild counts it
    recent = queries.throughput(db, 60, datetime.now(UTC))
    assert (recent.total, recent.by_kind, recent.refused) == (1, {"create": 1}, 0)
    assert queries.throughput(db, 600, datetime.now(UTC)).total == 2


def test_queue_depths_sum_kombus_priority_lists(redis: redis_lib.Redis, stack: Stack) -> None:
    # kombu's Redis transport keeps one list per priority step: "<queue>", "<queue>\x06\x163", ...
    redis.rpush("alpha", "m1", "m2")
    redis.rpush("alpha\x06\x166", "m3")
    assert queries.queue_depths(stack.env["FLEET_BROKER_URL"], ["alpha", "beta"]) == {"alpha": 3, "beta": 0}


def test_procfile_queues_reads_worker_lines_only() -> None:
    text = (
        "# comment: worker -Q nope\n"
        "a: celery -A fleet worker -Q sourcing,validation -c 2\n"
        "b: celery -A fleet worker --queues=build -n b@%h\n"
        "c: celery -A fleet worker -Qads\n"
        "beat: celery -A fleet beat -Q ignored\n"
    )
    assert procfile_queues(text) == {"sourcing", "validation", "build", "ads"}
