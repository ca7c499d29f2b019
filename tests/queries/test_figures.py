"""Aggregate figures over documents in the shapes the fleet writes: ages, flow, totals, the observed day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pymongo.database import Database

from fleet.constants import BETS, CLAIMS, FAILURES, REFUSALS, TRANSITIONS
from fleet.queries import figures
from fleet.store import Document

from ..cli import test_report
from ..cli.test_report import heartbeat

#: Recent, on a whole minute: flow windows are read from the tally's per-minute counts (26 h).
T0 = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def record(bet: str, seq: int, source: str | None, dest: str, when: float, agent: str = "a") -> Document:
    kind = "create" if source is None else "advance"
    return {
        "_id": f"{bet}:{seq}",
        "bet_id": bet,
        "seq": seq,
        "from_stage": source,
        "to_stage": dest,
        "agent": agent,
        "kind": kind,
        "at": at(when),
    }


def test_oldest_per_stage_is_the_earliest_arrival(db: Database[Document]) -> None:
    db[BETS].insert_many(
        [
            {"_id": "x", "stage": "new", "updated_at": at(5)},
            {"_id": "y", "stage": "new", "updated_at": at(1)},
            {"_id": "z", "stage": "done", "updated_at": at(3)},
            {"_id": "bad", "stage": "new", "updated_at": "yesterday"},  # unreadable: ignored
        ]
    )
    assert figures.oldest_per_stage(db) == {"new": at(1), "done": at(3)}


def test_flow_counts_entries_and_exits_in_the_window(db: Database[Document]) -> None:
    db[TRANSITIONS].insert_many(
        [
            record("x", 0, None, "new", 0),
            record("x", 1, "new", "checked", 10),
            record("y", 0, None, "new", -30),
        ]
    )
    db[REFUSALS].insert_many([{"agent": "r", "at": at(5)}, {"agent": "r", "at": at(-5)}])
    flow = figures.flow_per_stage(db, at(-1))
    assert flow.per_stage == {
        "new": figures.Flow(entered=1, left=1),
        "checked": figures.Flow(entered=1, left=0),
    }
    assert (flow.transitions, flow.refused) == (2, 1)


def test_totals_by_edge_agent_reason_and_status(db: Database[Document]) -> None:
    db[TRANSITIONS].insert_many(
        [
            record("x", 0, None, "new", 0, "maker"),
            record("x", 1, "new", "checked", 1, "checker"),
            record("y", 0, None, "new", 2, "maker"),
        ]
    )
    db[REFUSALS].insert_many(
        [{"agent": "rogue", "reason": "not_owner"}, {"agent": "rogue", "reason": "not_owner"}]
    )
    db[CLAIMS].insert_many([{"_id": f"x:0:{n}", "bet_id": "x", "seq": 0, "n": n} for n in (1, 0)])
    db[FAILURES].insert_many([{"bet_id": "x", "seq": 0, "agent": "checker", "at": at(1)}])
    db["heartbeats"].insert_many(
        [heartbeat("h1", "checker", 0, 1), heartbeat("h2", "checker", 5, 6, status="failed")]
    )
    edges = figures.transition_totals(db)
    assert edges[figures.EdgeKey("", "new", "maker", "create")] == 2
    assert edges[figures.EdgeKey("new", "checked", "checker", "advance")] == 1
    assert figures.refusal_totals(db) == {("rogue", "not_owner"): 2}
    assert figures.claim_takeovers(db) == 1
    assert figures.failures_per_agent(db) == {"checker": 1}
    beats = figures.heartbeat_figures(db)
    assert beats.by_outcome == {("checker", "ok"): 1, ("checker", "failed"): 1}
    assert beats.durations_s == [60.0, 60.0] and beats.last_started == {"checker": test_report.at(5)}
    assert [c["_id"] for c in figures.bet_claims(db, "x")] == ["x:0:0", "x:0:1"]
    assert [f["agent"] for f in figures.bet_failures(db, "x")] == ["checker"]


def test_observed_hours_fold_heartbeats_onto_the_fleet_day(db: Database[Document]) -> None:
    # A 240 s day: each fleet hour is 10 s. Two overlapping heartbeats in one hour, one alone in another.
    day = 240.0
    base = datetime.fromtimestamp(int(T0.timestamp() // day) * day, UTC)
    spans = [(0, 5), (2, 6), (35, 36)]
    db["heartbeats"].insert_many(
        [
            {
                "_id": f"h{i}",
                "agent": "a",
                "started_at": base + timedelta(seconds=s),
                "finished_at": base + timedelta(seconds=e),
            }
            for i, (s, e) in enumerate(spans)
        ]
    )
    hours = figures.observed_per_hour(db, day, base)
    assert len(hours) == 24
    assert (hours[0].starts, hours[0].peak_running) == (2, 2)
    assert (hours[3].starts, hours[3].peak_running) == (1, 1)
    assert sum(h.starts for h in hours) == 3
