"""Bets as an operator reads them: per stage, listed, and one bet's timeline."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database

from fleet.audit import protocol_versions_for_bet
from fleet.constants import BETS, BETS_DONE, HOLDS
from fleet.definitions.pipeline import Pipeline
from fleet.errors import CorruptBet, UnknownStage
from fleet.ledger import Enforcer
from fleet.ledger.holds import Hold, Holds
from fleet.ledger.records import parse_projection
from fleet.ledger.tally import Tally
from fleet.queries.common import Doc, Model
from fleet.store import reading


class StageCount(Model):
    """How many bets sit at one stage (``known=False``: the pipeline lacks the stage)."""

    stage: str
    count: int
    terminal: bool = False
    known: bool = True


class BetRow(Model):
    """One bet as listed; ``problem`` is set when its projection does not parse."""

    bet_id: str
    stage: str | None = None
    seq: int | None = None
    created_by: str | None = None
    updated_at: datetime | None = None
    fields: dict[str, Any] = {}
    problem: str | None = None


def require_stage(pipeline: Pipeline, stage: str) -> str:
    """``stage`` if the pipeline has it, else :class:`UnknownStage`."""
    if stage not in pipeline.stage_map:
        raise UnknownStage(stage, pipeline.stage_map)
    return stage


def bets_per_stage(db: Database[Doc], pipeline: Pipeline) -> list[StageCount]:
    """Bets per stage from the running tally: every pipeline stage in order (zeros too), then strays."""
    counts = Tally.for_db(db).stage_counts()
    rows = [
        StageCount(stage=s.name, count=counts.pop(s.name, 0), terminal=s.terminal) for s in pipeline.stages
    ]
    return rows + [StageCount(stage=name, count=n, known=False) for name, n in sorted(counts.items())]


def list_bets(db: Database[Doc], pipeline: Pipeline, stage: str | None, limit: int) -> list[BetRow]:
    """Up to ``limit`` bets (of ``stage``, if given), most recently moved first.

    Live bets come from the working set. Finished ones (a terminal ``stage``, or no stage
    and fewer live bets than ``limit``) are read from ``BETS_DONE``: that read is history.
    """
    query: Doc = {} if stage is None else {"stage": require_stage(pipeline, stage)}
    finished = stage is not None and pipeline.is_terminal(stage)
    docs = [] if finished else _newest(db, BETS, query, limit)
    if finished or (stage is None and len(docs) < limit):
        docs += _newest(db, BETS_DONE, query, limit - len(docs))
    return [_bet_row(doc) for doc in docs]


def _newest(db: Database[Doc], collection: str, query: Doc, limit: int) -> list[Doc]:
    if limit <= 0:
        return []
    with reading(collection):
        return list(db[collection].find(query).sort([("updated_at", DESCENDING), ("_id", 1)]).limit(limit))


def count_bets(db: Database[Doc], pipeline: Pipeline, stage: str | None) -> int:
    """How many bets there are (at ``stage``, if given), from the running tally."""
    counts = Tally.for_db(db).stage_counts()
    return sum(counts.values()) if stage is None else counts.get(require_stage(pipeline, stage), 0)


def _bet_row(doc: Doc) -> BetRow:
    try:
        bet = parse_projection(doc)
    except CorruptBet as exc:
        return BetRow(bet_id=str(doc.get("_id")), problem=exc.problem)
    return BetRow(
        bet_id=bet.bet_id,
        stage=bet.stage,
        seq=bet.seq,
        created_by=bet.created_by,
        updated_at=bet.updated_at,
        fields=bet.fields,
    )


class TimelineEntry(Model):
    """One accepted transition: who moved the bet, when, how, under which protocols."""

    seq: int
    at: datetime
    agent: str
    kind: str
    from_stage: str | None
    to_stage: str
    verdict: str
    protocol_version: str | None
    protocol_hash: str | None
    heartbeat_id: str | None
    evidence: dict[str, Any]


class BetTimeline(Model):
    """A bet's current state (from its last record), its transitions, touches and refusals."""

    bet_id: str
    stage: str
    seq: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    fields: dict[str, Any]
    transitions: list[TimelineEntry]
    touches: list[dict[str, Any]]
    refusals: list[dict[str, Any]]
    holds: list[dict[str, Any]] = []


def bet_timeline(db: Database[Doc], enforcer: Enforcer, bet_id: str, refusals: int = 50) -> BetTimeline:
    """The bet's history; :class:`~fleet.errors.UnknownBet` if it has none. Reads only."""
    records = enforcer.history(bet_id)
    first, last = records[0], records[-1]
    touches = [entry for entry in protocol_versions_for_bet(db, bet_id) if entry["source"] == "heartbeat"]
    return BetTimeline(
        bet_id=bet_id,
        stage=last.to_stage,
        seq=last.seq,
        created_by=first.agent,
        created_at=first.at,
        updated_at=last.at,
        fields=first.fields,
        transitions=[TimelineEntry.model_validate(r.model_dump()) for r in records],
        touches=touches,
        refusals=enforcer.refusals(bet_id, refusals),
        holds=[asdict(hold) for hold in _holds_of(db, bet_id) if hold.seq == last.seq],
    )


def _holds_of(db: Database[Doc], bet_id: str) -> list[Hold]:
    with reading(HOLDS):
        return Holds(db).of_bet(bet_id)
