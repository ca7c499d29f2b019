"""Finished bets leave the working set; the running counts equal a recount from the ledger."""

from __future__ import annotations

import pytest
from pymongo.database import Database

from fleet.constants import BETS, BETS_DONE
from fleet.definitions.pipeline import load_pipeline
from fleet.errors import TransitionRefused
from fleet.ledger import Enforcer
from fleet.ledger.tally import Tally
from fleet.store import Document


def _kill(enforcer: Enforcer) -> str:
    pipeline = enforcer.pipeline
    bet = enforcer.create_bet(pipeline.creators[0], {"idea": "to kill"})
    kill = next(e for e in pipeline.edges_from(bet.stage) if pipeline.is_terminal(e.dest))
    enforcer.advance(bet.bet_id, kill.dest, kill.owner, bet.seq, verdict="no")
    return bet.bet_id


def test_a_finished_bet_leaves_the_working_set_but_keeps_its_timeline(db: Database[Document]) -> None:
    enforcer = Enforcer(db, load_pipeline(None))
    bet_id = _kill(enforcer)
    assert db[BETS].find_one({"_id": bet_id}) is None
    assert db[BETS_DONE].find_one({"_id": bet_id})["seq"] == 1
    assert enforcer.ledger.get(bet_id).seq == 1
    assert enforcer.ledger.record(bet_id, 0) is not None and enforcer.ledger.record(bet_id, 1) is not None
    assert enforcer.verify() == []
    # A racing mover that read the bet before it finished is still refused
    with pytest.raises(TransitionRefused):
        enforcer.advance(bet_id, "source_validated", "source_validation_gate", 0, verdict="late")
    assert db[BETS].find_one({"_id": bet_id}) is None


def test_the_migration_moves_finished_projections_of_an_older_store(db: Database[Document]) -> None:
    enforcer = Enforcer(db, load_pipeline(None))
    bet_id = _kill(enforcer)
    # Given the layout an older fleet wrote: the finished projection in BETS
    db[BETS].insert_one(db[BETS_DONE].find_one({"_id": bet_id}))
    db[BETS_DONE].delete_one({"_id": bet_id})
    assert enforcer.ledger.unmigrated() == 1
    assert enforcer.ledger.migrate() == 1
    assert enforcer.ledger.unmigrated() == 0 and db[BETS_DONE].find_one({"_id": bet_id})
    assert enforcer.verify() == []


def test_rebuilt_counts_equal_the_counts_kept_as_records_landed(db: Database[Document]) -> None:
    enforcer = Enforcer(db, load_pipeline(None))
    for _ in range(3):
        _kill(enforcer)
    live = enforcer.create_bet(enforcer.pipeline.creators[0], {"idea": "live"})
    with pytest.raises(TransitionRefused):
        enforcer.advance(live.bet_id, "scaling", "nobody", live.seq, verdict="rogue")
    tally = Tally.for_db(db)
    kept = (tally.stage_counts(), tally.edge_totals(), tally.refusal_totals())
    assert tally.check() == []
    tally.forget()
    assert (tally.stage_counts(), tally.edge_totals(), tally.refusal_totals()) == kept
    assert kept[0]["killed"] == 3 and kept[0][live.stage] == 1
