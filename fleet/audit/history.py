"""Which protocols versions and hashes touched a bet, from its records and heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.database import Database

from fleet.audit.common import Doc, find, when
from fleet.constants import HEARTBEATS, TRANSITIONS
from fleet.ledger.records import record_id
from fleet.store import reading


def protocol_versions_for_bet(db: Database[Doc], bet_id: str) -> list[Doc]:
    """Every protocols version and hash that touched the bet, oldest first.

    One entry per transition record (``source="transition"``) and per heartbeat that
    handled the bet (``source="heartbeat"``), so two bets processed weeks apart can be
    compared rule by rule.
    """
    entries = [_from_transition(doc) for doc in _records(db, bet_id)]
    for beat in find(db, HEARTBEATS, {"bets.bet_id": bet_id}):
        entries += _from_heartbeat(beat, bet_id)
    return sorted(
        entries, key=lambda e: (e["at"] or datetime.min.replace(tzinfo=UTC), e["source"] != "heartbeat")
    )


def _records(db: Database[Doc], bet_id: str) -> list[Doc]:
    """The bet's records by ``_id`` reads from seq 0 (a query by ``bet_id`` reads all history)."""
    docs: list[Doc] = []
    with reading(TRANSITIONS):
        while (doc := db[TRANSITIONS].find_one({"_id": record_id(bet_id, len(docs))})) is not None:
            docs.append(doc)
    return docs


def _from_transition(doc: Doc) -> Doc:
    return {
        "source": "transition",
        "seq": doc.get("seq"),
        "agent": doc.get("agent"),
        "heartbeat_id": doc.get("heartbeat_id"),
        "protocol_version": doc.get("protocol_version"),
        "protocol_hash": doc.get("protocol_hash"),
        "at": when(doc, "at"),
        "what": f"{doc.get('kind')} {doc.get('from_stage') or '(new)'} -> {doc.get('to_stage')}",
    }


def _from_heartbeat(beat: Doc, bet_id: str) -> list[Doc]:
    return [
        {
            "source": "heartbeat",
            "seq": entry.get("seq"),
            "agent": beat.get("agent"),
            "heartbeat_id": str(beat.get("_id")),
            "protocol_version": beat.get("protocol_version"),
            "protocol_hash": beat.get("protocol_hash"),
            "at": when(beat, "started_at"),
            "what": str(entry.get("outcome")),
        }
        for entry in beat.get("bets") or []
        if isinstance(entry, dict) and entry.get("bet_id") == bet_id
    ]
