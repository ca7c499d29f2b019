"""Handoff latency: recorded per bet at pickup, summarised per stage and agent, shown by status."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from fleet.cli.ledger import handoff_view
from fleet.constants import HEARTBEATS, TRANSITIONS
from fleet.runtime.handoff import Handoff, handoffs, percentile, summarise
from fleet.runtime.heartbeat import run_heartbeat

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def test_each_claimed_bet_records_its_arrival_and_wait(db, runtime, make_bets) -> None:
    # Given two bets waiting at the checker's stage
    bets = make_bets(2)
    # When the checker's heartbeat picks them up
    record = run_heartbeat(runtime, "checker", "adhoc", heartbeat_id="hb-1")
    # Then each per-bet entry says where it waited, since when, and for how long
    stored = db[HEARTBEATS].find_one({"_id": "hb-1"})
    assert {entry["bet_id"] for entry in stored["bets"]} == {b.bet_id for b in bets}
    for entry in stored["bets"]:
        created = db[TRANSITIONS].find_one({"bet_id": entry["bet_id"], "seq": 0})
        assert entry["stage"] == "new"
        assert entry["arrived_at"].replace(tzinfo=UTC) == created["at"].replace(tzinfo=UTC)
        assert entry["handoff_s"] >= 0
    assert record.status == "ok"
    # And the summary has one row for that stage and agent
    [row] = handoffs(db, EPOCH)
    assert (row.stage, row.agent, row.bets) == ("new", "checker", 2)
    assert row.median_s <= row.p95_s <= row.max_s


def test_a_bet_picked_up_twice_at_one_seq_counts_once_with_its_first_pickup(db, runtime, make_bets) -> None:
    # Given a bet that stays where it is (the checker waits on it)
    make_bets(1, verdict="wait")
    # When two heartbeats pick it up at the same seq
    run_heartbeat(runtime, "checker", "adhoc", heartbeat_id="hb-1")
    run_heartbeat(runtime, "checker", "adhoc", heartbeat_id="hb-2")
    first = db[HEARTBEATS].find_one({"_id": "hb-1"})["bets"][0]["handoff_s"]
    second = db[HEARTBEATS].find_one({"_id": "hb-2"})["bets"][0]["handoff_s"]
    assert second >= first
    # Then it counts once, with the first wait
    [row] = handoffs(db, EPOCH)
    assert row.bets == 1 and row.max_s == first


def test_records_without_handoffs_are_ignored(db) -> None:
    now = datetime.now(UTC)
    db[HEARTBEATS].insert_many([
        {"_id": "old", "agent": "checker", "started_at": now, "bets": [{"bet_id": "b", "seq": 0}]},
        {"_id": "odd", "agent": "checker", "started_at": now, "bets": "not a list"},
    ])  # fmt: skip
    assert handoffs(db, EPOCH) == []


def test_percentiles_are_nearest_rank() -> None:
    waits = [float(n) for n in range(1, 101)]
    assert (percentile(waits, 0.5), percentile(waits, 0.95), percentile([], 0.5)) == (50.0, 95.0, 0.0)
    rows = summarise([("a", "x", 3.0), ("a", "x", 1.0), ("b", "y", 2.0)])
    assert rows == [
        Handoff(stage="a", agent="x", bets=2, median_s=1.0, p95_s=3.0, max_s=3.0),
        Handoff(stage="b", agent="y", bets=1, median_s=2.0, p95_s=2.0, max_s=2.0),
    ]


def test_the_status_view_shows_one_line_per_stage_and_agent() -> None:
    console = Console(width=200, record=True)
    console.print(
        handoff_view([Handoff(stage="new", agent="checker", bets=2, median_s=0.5, p95_s=1.25, max_s=2)])
    )
    text = console.export_text()
    assert "handoff latency" in text and "checker" in text and "1.25" in text
    console.print(handoff_view([]))
    assert "none" in console.export_text()
