"""The enforcer against a real FerretDB: every rule, every refusal, repair and verify."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo import MongoClient
from pymongo.database import Database

from fleet.constants import BETS, TRANSITIONS
from fleet.definitions.pipeline import load_pipeline
from fleet.errors import (
    CorruptBet,
    DuplicateBet,
    IllegalTransition,
    InvalidBetData,
    LedgerError,
    LedgerUnavailable,
    NotOwner,
    StaleBet,
    UnknownBet,
)
from fleet.ledger import Bet, Enforcer, ProtocolStamp
from fleet.ops import services as svc
from fleet.store import Document

STAMP = ProtocolStamp(version="1.2", hash="abc123")


def snapshot(db: Database[Document]) -> tuple[list[Document], list[Document]]:
    """Every transition record and every projection, in a stable order."""
    return (
        list(db[TRANSITIONS].find().sort("_id", 1)),
        list(db[BETS].find().sort("_id", 1)),
    )


def walk(enforcer: Enforcer, bet: Bet, *moves: tuple[str, str]) -> Bet:
    """Advance ``bet`` along ``(to_stage, agent)`` moves, each from the bet's latest seq."""
    for to_stage, agent in moves:
        bet = enforcer.advance(bet.bet_id, to_stage, agent, bet.seq, verdict=f"to {to_stage}")
    return bet


# --- creating bets ------------------------------------------------------------------


def test_a_creator_creates_a_bet_in_the_initial_stage_at_seq_0(enforcer: Enforcer, db) -> None:
    # When a creator creates a bet with a heartbeat id and a protocol stamp
    bet = enforcer.create_bet("maker", {"idea": "socks", "score": 3}, heartbeat_id="hb-1", stamp=STAMP)
    # Then it is at the initial stage, seq 0, with its fields and creator
    assert (bet.stage, bet.seq, bet.fields, bet.created_by) == (
        "new",
        0,
        {"idea": "socks", "score": 3},
        "maker",
    )
    assert len(bet.bet_id) == 12 and bet.created_at == bet.updated_at
    assert bet.created_at.tzinfo is not None
    # And the create record carries the heartbeat and the stamp, the projection equals the bet
    (record,) = enforcer.history(bet.bet_id)
    assert (record.seq, record.kind, record.from_stage, record.to_stage) == (0, "create", None, "new")
    assert (record.heartbeat_id, record.protocol_version, record.protocol_hash) == ("hb-1", "1.2", "abc123")
    assert record.verdict == "created" and record.fields == bet.fields
    assert db[TRANSITIONS].find_one({"_id": f"{bet.bet_id}:0"})["agent"] == "maker"
    assert enforcer.get(bet.bet_id) == bet


def test_a_bet_id_can_be_chosen_and_a_taken_one_is_refused_and_recorded(enforcer: Enforcer, db) -> None:
    # Given a bet created with a chosen id
    first = enforcer.create_bet("maker", {"n": 1}, bet_id="bet-1", verdict="found", evidence={"url": "x"})
    before = snapshot(db)
    # When another creator tries the same id
    with pytest.raises(DuplicateBet) as raised:
        enforcer.create_bet("scout", {"n": 2}, bet_id="bet-1", heartbeat_id="hb-2")
    # Then it is refused, recorded, and the first bet is untouched
    assert raised.value.bet_id == "bet-1"
    assert snapshot(db) == before
    assert enforcer.get("bet-1") == first
    (refusal,) = enforcer.refusals("bet-1")
    assert refusal["reason"] == "DuplicateBet" and refusal["agent"] == "scout"
    assert (refusal["from_stage"], refusal["to_stage"], refusal["heartbeat_id"]) == (None, "new", "hb-2")
    assert enforcer.history("bet-1")[0].evidence == {"url": "x"}


def test_only_creators_may_create_and_a_refused_create_writes_nothing_else(enforcer: Enforcer, db) -> None:
    # When an agent that is not a creator tries to create a bet
    with pytest.raises(NotOwner) as raised:
        enforcer.create_bet("checker", {"idea": "x"}, heartbeat_id="hb-9", stamp=STAMP)
    # Then it is refused and recorded, and no bet exists
    assert "only creators may create bets: maker, scout" in str(raised.value)
    assert snapshot(db) == ([], [])
    (refusal,) = enforcer.refusals()
    assert refusal["reason"] == NotOwner.reason and refusal["bet_id"] is None
    assert (refusal["protocol_version"], refusal["protocol_hash"]) == ("1.2", "abc123")


UNSTORABLE = {
    "dotted key": {"a.b": 1},
    "dollar key": {"$set": 1},
    "nested dotted key": {"outer": {"in.ner": 1}},
    "nested arrays": {"grid": [[1, 2], [3, 4]]},
    "non-string key": {1: "one"},
    "value BSON cannot encode": {"when": {1, 2}},
}


@pytest.mark.parametrize("fields", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_fields_that_cannot_be_stored_everywhere_are_rejected_before_anything_is_written(
    enforcer: Enforcer, db, fields: dict[Any, Any]
) -> None:
    with pytest.raises(InvalidBetData):
        enforcer.create_bet("maker", fields)
    assert snapshot(db) == ([], [])


def test_evidence_that_cannot_be_stored_is_rejected_on_advance(enforcer: Enforcer, db) -> None:
    bet = enforcer.create_bet("maker", {})
    before = snapshot(db)
    with pytest.raises(InvalidBetData):
        enforcer.advance(bet.bet_id, "checked", "checker", 0, verdict="ok", evidence={"k.v": 1})
    assert snapshot(db) == before


# --- advancing ------------------------------------------------------------------------


def test_owners_move_a_bet_along_every_kind_of_edge(enforcer: Enforcer) -> None:
    # Given a new bet
    bet = enforcer.create_bet("maker", {"idea": "x"})
    # When each edge's owner moves it: advance, park, revive, advance
    moves = [("checked", "checker"), ("parked", "closer"), ("checked", "reviver"), ("done", "closer")]
    final = walk(enforcer, bet, *moves)
    # Then each step is one record, in order, of the edge's kind, chained stage to stage
    assert (final.stage, final.seq, final.fields, final.created_by) == ("done", 4, {"idea": "x"}, "maker")
    history = enforcer.history(bet.bet_id)
    assert [r.seq for r in history] == [0, 1, 2, 3, 4]
    assert [r.kind for r in history] == ["create", "advance", "park", "revive", "advance"]
    assert [(r.from_stage, r.to_stage) for r in history[1:]] == [
        ("new", "checked"),
        ("checked", "parked"),
        ("parked", "checked"),
        ("checked", "done"),
    ]
    assert [r.agent for r in history[1:]] == ["checker", "closer", "reviver", "closer"]
    # And the returned bet is what get() reads, and the ledger verifies clean
    assert enforcer.get(bet.bet_id) == final
    assert final.updated_at == history[-1].at and final.created_at == history[0].at
    assert enforcer.verify() == []


def test_an_advance_records_verdict_evidence_heartbeat_and_stamp(enforcer: Enforcer) -> None:
    bet = enforcer.create_bet("maker", {})
    moved = enforcer.advance(
        bet.bet_id, "dropped", "checker", 0, verdict="kill: no demand",
        evidence={"searches": 3, "sources": ["a", "b"]}, heartbeat_id="hb-7", stamp=STAMP,
    )  # fmt: skip
    assert (moved.stage, moved.seq) == ("dropped", 1)
    record = enforcer.history(bet.bet_id)[1]
    assert (record.kind, record.verdict, record.evidence) == (
        "kill",
        "kill: no demand",
        {"searches": 3, "sources": ["a", "b"]},
    )
    assert (record.heartbeat_id, record.protocol_version, record.protocol_hash) == ("hb-7", "1.2", "abc123")
    assert record.fields == {}  # fields live on record 0 only


# --- every refusal: raised, recorded, nothing else changed -----------------------------

Setup = Callable[[Enforcer], tuple[str, int]]


def at_new(enforcer: Enforcer) -> tuple[str, int]:
    bet = enforcer.create_bet("maker", {}, bet_id="b1")
    return bet.bet_id, bet.seq


def at_checked(enforcer: Enforcer) -> tuple[str, int]:
    bet = walk(enforcer, enforcer.create_bet("maker", {}, bet_id="b1"), ("checked", "checker"))
    return bet.bet_id, bet.seq


def at_dropped(enforcer: Enforcer) -> tuple[str, int]:
    bet = walk(enforcer, enforcer.create_bet("maker", {}, bet_id="b1"), ("dropped", "checker"))
    return bet.bet_id, bet.seq


# (setup, bet id override, seq offset, to_stage, agent, error, reason, detail fragment, from_stage)
Case = tuple[Setup, str | None, int, str, str, type[LedgerError], str, str, str | None]
REFUSALS_CASES: dict[str, Case] = {
    "unknown bet": (at_new, "nope", 0, "checked", "checker", UnknownBet, "UnknownBet", "unknown bet", None),
    "caller ahead of the bet": (
        at_new, None, 5, "checked", "checker", StaleBet, StaleBet.reason,
        "bet is at seq 0 (new), caller expected seq 5", "new",
    ),
    "negative seq": (
        at_new, None, -1, "checked", "checker", StaleBet, StaleBet.reason, "expected seq -1", "new",
    ),
    "caller behind the bet, asking for a move illegal from its old stage": (
        at_checked, None, -1, "done", "closer", StaleBet, StaleBet.reason,
        "the bet moved on: bet is at seq 1 (checked), caller expected seq 0", "checked",
    ),
    "behind, with an edge that is legal from the old stage": (
        at_checked, None, -1, "dropped", "checker", StaleBet, StaleBet.reason, "lost the race", "checked",
    ),
    "no such edge": (
        at_new, None, 0, "done", "closer", IllegalTransition, IllegalTransition.reason,
        "no such edge in the handoff map (allowed from 'new': checked, dropped)", "new",
    ),
    "unknown target stage": (
        at_new, None, 0, "moon", "checker", IllegalTransition, IllegalTransition.reason,
        "unknown stage 'moon'", "new",
    ),
    "out of a terminal stage": (
        at_dropped, None, 0, "checked", "reviver", IllegalTransition, IllegalTransition.reason,
        "'dropped' is a terminal stage", "dropped",
    ),
    "edge owned by another agent": (
        at_new, None, 0, "checked", "closer", NotOwner, NotOwner.reason,
        "the edge is owned by 'checker'", "new",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "setup, bet_override, seq_offset, to_stage, agent, error, reason, detail, from_stage",
    REFUSALS_CASES.values(),
    ids=REFUSALS_CASES.keys(),
)
def test_each_refusal_raises_is_recorded_and_changes_nothing_else(
    enforcer: Enforcer, db, setup: Setup, bet_override: str | None, seq_offset: int, to_stage: str,
    agent: str, error: type[LedgerError], reason: str, detail: str, from_stage: str | None,
) -> None:  # fmt: skip
    # Given a bet in some stage, and the ledger as it is
    bet_id, seq = setup(enforcer)
    bet_id = bet_override or bet_id
    expected_seq = seq + seq_offset
    before = snapshot(db)
    # When an agent asks for a move the rules refuse
    with pytest.raises(error) as raised:
        enforcer.advance(
            bet_id, to_stage, agent, expected_seq, verdict="try", heartbeat_id="hb-x", stamp=STAMP
        )
    # Then it raised the right error, no record or projection changed, and one refusal says why
    assert detail in str(raised.value)
    assert snapshot(db) == before
    (refusal,) = enforcer.refusals()
    assert refusal["reason"] == reason and refusal["error"] == error.__name__
    assert detail in refusal["detail"]
    assert (refusal["bet_id"], refusal["agent"], refusal["to_stage"]) == (bet_id, agent, to_stage)
    assert (refusal["from_stage"], refusal["expected_seq"]) == (from_stage, expected_seq)
    assert (refusal["heartbeat_id"], refusal["protocol_version"], refusal["protocol_hash"]) == (
        "hb-x",
        "1.2",
        "abc123",
    )
    assert isinstance(refusal["at"], datetime)
    assert enforcer.verify() == []


def test_refusals_are_listed_newest_first_per_bet_and_limited(enforcer: Enforcer) -> None:
    # Given three refused attempts on two bets
    a = enforcer.create_bet("maker", {}, bet_id="a")
    enforcer.create_bet("maker", {}, bet_id="b")
    for agent in ("closer", "reviver"):
        with pytest.raises(NotOwner):
            enforcer.advance(a.bet_id, "checked", agent, 0, verdict="try")
    with pytest.raises(IllegalTransition):
        enforcer.advance("b", "done", "closer", 0, verdict="try")
    # Then they are listed newest first, per bet, and limited
    assert [r["agent"] for r in enforcer.refusals("a")] == ["reviver", "closer"]
    assert [r["bet_id"] for r in enforcer.refusals()] == ["b", "a", "a"]
    assert len(enforcer.refusals(limit=2)) == 2
    assert enforcer.refusals(limit=0) == []
    assert all("_id" not in r for r in enforcer.refusals())


# --- reading --------------------------------------------------------------------------


def test_bets_at_lists_projections_at_the_stages_least_recently_moved_first(enforcer: Enforcer, db) -> None:
    # Given bets in several stages, one corrupt projection among them
    first, second, third = (enforcer.create_bet("maker", {"n": n}) for n in range(3))
    walk(enforcer, second, ("checked", "checker"))
    db[BETS].insert_one({"_id": "broken", "stage": "new", "seq": "not a number"})
    # When a heartbeat lists what waits at "new"
    listed = enforcer.bets_at(["new"], limit=10)
    # Then it sees the two new bets oldest first, and the corrupt one as a CorruptBet value
    good = [b for b in listed if isinstance(b, Bet)]
    (bad,) = [b for b in listed if isinstance(b, CorruptBet)]
    assert [b.bet_id for b in good] == [first.bet_id, third.bet_id]
    assert bad.bet_id == "broken" and "seq" in bad.problem
    assert [b.bet_id for b in enforcer.bets_at(["new", "checked"], limit=10) if isinstance(b, Bet)] == [
        first.bet_id,
        third.bet_id,
        second.bet_id,
    ]
    assert len(enforcer.bets_at(["new", "checked"], limit=2)) == 2
    assert enforcer.bets_at(["new"], limit=0) == [] and enforcer.bets_at([], limit=5) == []


def test_get_and_history_of_an_unknown_bet_raise(enforcer: Enforcer) -> None:
    with pytest.raises(UnknownBet):
        enforcer.get("nope")
    with pytest.raises(UnknownBet):
        enforcer.history("nope")


def test_get_rebuilds_a_missing_lagging_or_unreadable_projection(enforcer: Enforcer, db) -> None:
    # Given a bet at seq 2
    bet = walk(enforcer, enforcer.create_bet("maker", {"k": 1}), ("checked", "checker"), ("parked", "closer"))
    old = db[BETS].find_one({"_id": bet.bet_id})
    # When its projection is deleted, then put back at an older state, then made unreadable
    for damage in (
        lambda: db[BETS].delete_one({"_id": bet.bet_id}),
        lambda: db[BETS].replace_one({"_id": bet.bet_id}, {**old, "stage": "new", "seq": 0}),
        lambda: db[BETS].replace_one({"_id": bet.bet_id}, {**old, "fields": "oops"}),
    ):
        damage()
        # Then get() answers from the records and writes the projection back
        assert enforcer.get(bet.bet_id) == bet
        assert db[BETS].find_one({"_id": bet.bet_id}) == old
    assert enforcer.verify() == []


def test_a_record_that_does_not_parse_raises_corrupt_bet_on_read(enforcer: Enforcer, db) -> None:
    bet = enforcer.create_bet("maker", {}, bet_id="c")
    db[TRANSITIONS].insert_one({"_id": "c:1", "bet_id": "c", "seq": 1, "to_stage": 5})
    with pytest.raises(CorruptBet) as raised:
        enforcer.get(bet.bet_id)
    assert raised.value.bet_id == "c" and "c:1" in raised.value.problem
    with pytest.raises(CorruptBet):
        enforcer.history("c")


def test_a_client_without_tz_aware_reads_the_same_bets(enforcer: Enforcer, stack) -> None:
    # Given a bet written through the tz-aware client
    bet = enforcer.create_bet("maker", {"idea": "x"})
    # When another process reads it with pymongo's default (naive) client
    client: MongoClient[Document] = MongoClient(stack.env["FLEET_MONGO_URL"])
    try:
        naive = Enforcer(client[stack.env["FLEET_MONGO_DB"]], enforcer.pipeline)
        # Then it reads the same bet, with aware datetimes, and does not rewrite it
        assert naive.get(bet.bet_id) == bet
        assert naive.repair_all() == 0
    finally:
        client.close()


def test_an_unreachable_store_raises_ledger_unavailable_in_one_line(pipeline) -> None:
    # Given an enforcer over a port where nothing listens
    client: MongoClient[Document] = MongoClient(
        f"mongodb://127.0.0.1:{svc.free_port()}/", serverSelectionTimeoutMS=200, connectTimeoutMS=200
    )
    enforcer = Enforcer(client["fleet_nowhere"], pipeline)
    try:
        # When it is used, Then each call raises the transient error with a short message
        for call in (
            lambda: enforcer.get("x"),
            lambda: enforcer.create_bet("maker", {}),
            lambda: enforcer.advance("x", "checked", "checker", 0, verdict="v"),
            lambda: enforcer.bets_at(["new"], 5),
            enforcer.verify,
            enforcer.repair_all,
        ):
            with pytest.raises(LedgerUnavailable) as raised:
                call()
            assert "\n" not in str(raised.value) and len(str(raised.value)) < 300
    finally:
        client.close()


# --- repair and verify ------------------------------------------------------------------


def test_repair_all_rolls_forward_every_missing_or_lagging_projection(enforcer: Enforcer, db) -> None:
    # Given one bet without a projection, one lagging, one healthy
    missing = enforcer.create_bet("maker", {})
    lagging = walk(enforcer, enforcer.create_bet("maker", {}), ("checked", "checker"))
    healthy = enforcer.create_bet("maker", {})
    db[BETS].delete_one({"_id": missing.bet_id})
    db[BETS].update_one({"_id": lagging.bet_id}, {"$set": {"stage": "new", "seq": 0}})
    assert len(enforcer.verify()) == 2
    # When the watchdog repairs
    repaired = enforcer.repair_all()
    # Then both were rolled forward, nothing else was written, and the ledger verifies clean
    assert repaired == 2
    assert enforcer.repair_all() == 0
    assert [enforcer.get(b.bet_id) for b in (missing, lagging, healthy)] == [missing, lagging, healthy]
    assert enforcer.verify() == []


def test_verify_is_empty_on_a_healthy_ledger_and_scoped_to_one_bet(enforcer: Enforcer) -> None:
    bets = [enforcer.create_bet("scout", {"n": n}) for n in range(3)]
    walk(enforcer, bets[0], ("checked", "checker"), ("done", "closer"))
    walk(enforcer, bets[1], ("dropped", "checker"))
    assert enforcer.verify() == []
    assert enforcer.verify(bets[2].bet_id) == []
    with pytest.raises(UnknownBet):
        enforcer.verify("nope")


def plant_skipped_seq(db: Database[Document], bet: Bet) -> None:
    record = db[TRANSITIONS].find_one({"_id": f"{bet.bet_id}:1"})
    db[TRANSITIONS].insert_one({**record, "_id": f"{bet.bet_id}:3", "seq": 3, "from_stage": "checked"})


def plant_wrong_owner(db: Database[Document], bet: Bet) -> None:
    db[TRANSITIONS].update_one({"_id": f"{bet.bet_id}:1"}, {"$set": {"agent": "closer"}})


def plant_wrong_kind(db: Database[Document], bet: Bet) -> None:
    db[TRANSITIONS].update_one({"_id": f"{bet.bet_id}:1"}, {"$set": {"kind": "kill"}})


def plant_broken_chain(db: Database[Document], bet: Bet) -> None:
    db[TRANSITIONS].update_one({"_id": f"{bet.bet_id}:1"}, {"$set": {"from_stage": "parked"}})


def plant_not_an_edge(db: Database[Document], bet: Bet) -> None:
    db[TRANSITIONS].update_one({"_id": f"{bet.bet_id}:1"}, {"$set": {"to_stage": "done"}})
    db[BETS].update_one({"_id": bet.bet_id}, {"$set": {"stage": "done"}})


def plant_projection_mismatch(db: Database[Document], bet: Bet) -> None:
    db[BETS].update_one({"_id": bet.bet_id}, {"$set": {"stage": "done"}})


def plant_unparsable_record(db: Database[Document], bet: Bet) -> None:
    db[TRANSITIONS].insert_one({"_id": f"{bet.bet_id}:2", "bet_id": bet.bet_id, "seq": 2, "to_stage": 5})


def plant_create_by_non_creator(db: Database[Document], bet: Bet) -> None:
    db[TRANSITIONS].update_one({"_id": f"{bet.bet_id}:0"}, {"$set": {"agent": "checker"}})


def plant_create_elsewhere(db: Database[Document], bet: Bet) -> None:
    db[TRANSITIONS].update_one({"_id": f"{bet.bet_id}:0"}, {"$set": {"to_stage": "checked"}})


def plant_projection_without_records(db: Database[Document], bet: Bet) -> None:
    db[BETS].insert_one({**db[BETS].find_one({"_id": bet.bet_id}), "_id": "ghost"})


def plant_missing_projection(db: Database[Document], bet: Bet) -> None:
    db[BETS].delete_one({"_id": bet.bet_id})


def plant_mismatched_id(db: Database[Document], bet: Bet) -> None:
    record = db[TRANSITIONS].find_one({"_id": f"{bet.bet_id}:1"})
    db[TRANSITIONS].delete_one({"_id": f"{bet.bet_id}:1"})
    db[TRANSITIONS].insert_one({**record, "_id": f"{bet.bet_id}:one"})


PLANTED = {
    "a skipped seq": (plant_skipped_seq, 2, "no readable record at seq 2"),
    "a wrong owner": (plant_wrong_owner, 1, "was taken by 'closer' but is owned by 'checker'"),
    "a wrong kind": (plant_wrong_kind, 1, "is recorded as 'kill' but the edge's kind is 'advance'"),
    "a broken chain": (plant_broken_chain, 1, "leaves 'parked' but seq 0 left the bet in 'new'"),
    "a step that is not an edge": (plant_not_an_edge, 1, "new -> done is not an edge"),
    "a projection mismatch": (plant_projection_mismatch, None, "projection at seq 1 ('done')"),
    "a missing projection": (plant_missing_projection, None, "projection missing"),
    "an unparsable record": (plant_unparsable_record, 2, "record 'v:2'"),
    "a create by a non-creator": (plant_create_by_non_creator, 0, "created by 'checker'"),
    "a create outside the initial stage": (plant_create_elsewhere, 0, "not the initial stage 'new'"),
    "a projection without records": (plant_projection_without_records, None, "without any readable record"),
    "a record id that does not match its seq": (plant_mismatched_id, None, "has seq 1"),
}


@pytest.mark.parametrize("plant, seq, problem", PLANTED.values(), ids=PLANTED.keys())
def test_verify_finds_each_planted_problem(
    enforcer: Enforcer, db, plant: Callable[[Database[Document], Bet], None], seq: int | None, problem: str
) -> None:
    # Given a healthy bet at seq 1 next to another healthy bet
    bet = walk(enforcer, enforcer.create_bet("maker", {}, bet_id="v"), ("checked", "checker"))
    walk(enforcer, enforcer.create_bet("maker", {}, bet_id="w"), ("checked", "checker"))
    assert enforcer.verify() == []
    # When a problem is planted by writing to the store directly
    plant(db, bet)
    # Then verify reports it, on that bet only, and does not raise
    violations = enforcer.verify()
    assert violations, "nothing found"
    assert any(problem in v.problem and (seq is None or v.seq == seq) for v in violations), violations
    assert {v.bet_id for v in violations} <= {"v", "ghost"}


# --- a custom pipeline, loaded from a file ------------------------------------------


def test_a_pipeline_loaded_from_a_yaml_file_drives_the_enforcer(db, tmp_path: Path) -> None:
    # Given a two-step pipeline of the user's own, in a YAML file
    definition = {
        "name": "review",
        "initial_stage": "draft",
        "creators": ["author"],
        "stages": [
            {"name": "draft"},
            {"name": "published", "terminal": True},
            {"name": "rejected", "terminal": True},
        ],
        "transitions": [
            {"from": "draft", "to": "published", "owner": "editor"},
            {"from": "draft", "to": "rejected", "owner": "editor", "kind": "kill"},
        ],
    }
    path = tmp_path / "review.yaml"
    path.write_text(yaml.safe_dump(definition))
    enforcer = Enforcer(db, load_pipeline(str(path)))
    # When its creator and owner use it
    bet = enforcer.create_bet("author", {"title": "t"})
    # Then its rules, not the default pipeline's, apply
    with pytest.raises(NotOwner):
        enforcer.create_bet("maker", {})
    with pytest.raises(NotOwner):
        enforcer.advance(bet.bet_id, "published", "author", 0, verdict="self-publish")
    with pytest.raises(IllegalTransition):
        enforcer.advance(bet.bet_id, "checked", "editor", 0, verdict="wrong map")
    done = enforcer.advance(bet.bet_id, "published", "editor", 0, verdict="good")
    assert (done.stage, done.seq) == ("published", 1)
    with pytest.raises(IllegalTransition):
        enforcer.advance(bet.bet_id, "rejected", "editor", 1, verdict="too late")
    assert enforcer.verify() == []
    assert [r["reason"] for r in enforcer.refusals()] == [IllegalTransition.reason] * 2 + [
        NotOwner.reason
    ] * 2
