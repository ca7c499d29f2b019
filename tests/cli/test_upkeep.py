"""``fleet migrate`` and ``fleet tally``: the commands an operator runs on an older or damaged store."""

from __future__ import annotations

from pymongo.database import Database

from fleet.constants import BETS, BETS_DONE
from fleet.ledger import Enforcer
from fleet.ledger.tally import Tally
from fleet.store import Document

from .conftest import invoke


def _killed(enforcer: Enforcer) -> str:
    pipeline = enforcer.pipeline
    bet = enforcer.create_bet(pipeline.creators[0], {"idea": "x"})
    kill = next(e for e in pipeline.edges_from(bet.stage) if pipeline.is_terminal(e.dest))
    enforcer.advance(bet.bet_id, kill.dest, kill.owner, bet.seq, verdict="no")
    return bet.bet_id


def test_migrate_moves_finished_bets_of_an_older_layout(db: Database[Document], enforcer: Enforcer) -> None:
    bet_id = _killed(enforcer)
    db[BETS].insert_one(db[BETS_DONE].find_one({"_id": bet_id}))
    db[BETS_DONE].delete_one({"_id": bet_id})
    ran = invoke("migrate", "--json")
    assert ran.code == 0, ran.text
    assert ran.json()["moved"] == 1
    assert db[BETS].find_one({"_id": bet_id}) is None and db[BETS_DONE].find_one({"_id": bet_id})
    again = invoke("migrate", "--json")
    assert again.code == 0 and again.json()["moved"] == 0


def test_tally_check_finds_a_damaged_count_and_rebuild_fixes_it(
    db: Database[Document], enforcer: Enforcer
) -> None:
    _killed(enforcer)
    assert invoke("tally", "--check").code == 0
    tally = Tally.for_db(db)
    tally.redis.hincrby(tally.key("stages"), "killed", 5)  # counts gone wrong
    damaged = invoke("tally", "--check", "--json")
    assert damaged.code == 1 and any("killed" in d for d in damaged.json()["differences"])
    fixed = invoke("tally", "--rebuild", "--check", "--json")
    assert fixed.code == 0, fixed.text
    assert fixed.json()["stages"]["killed"] == 1 and fixed.json()["differences"] == []


def test_doctor_says_when_the_store_needs_the_migration(db: Database[Document], enforcer: Enforcer) -> None:
    bet_id = _killed(enforcer)
    db[BETS].insert_one(db[BETS_DONE].find_one({"_id": bet_id}))
    ran = invoke("doctor", "--json")
    layout = next(c for c in ran.json()["checks"] if c["name"] == "store layout")
    assert not layout["ok"] and "fleet migrate" in layout["fix"]
    assert invoke("migrate").code == 0
    after = invoke("doctor", "--json")
    assert next(c for c in after.json()["checks"] if c["name"] == "store layout")["ok"]
