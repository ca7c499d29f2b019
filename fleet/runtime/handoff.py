"""Handoff latency: how long a bet waits at a stage before its owner picks it up.

Arrival is the ``at`` of the transition that put the bet there (the projection's
``updated_at``); pickup is when a polling heartbeat of the owner claimed it. Both
come from the store's clock, so hosts with skewed clocks do not distort the figure.
Each heartbeat record's per-bet entries carry ``stage``, ``arrived_at`` and
``handoff_s``; a bet claimed more than once at one seq (it stayed, or a heartbeat
died) counts once, with its first pickup.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pymongo.database import Database

from fleet.constants import HEARTBEATS
from fleet.ledger import Bet
from fleet.store import Document, reading

#: ``fleet status`` shows handoffs of the heartbeats started within this window.
HANDOFF_WINDOW_H = 24.0


def picked_up(bets: Iterable[Bet], now: datetime) -> dict[str, dict[str, Any]]:
    """Per claimed bet: the fields its heartbeat-record entry gets (stage, arrival, wait)."""
    return {
        bet.bet_id: {
            "stage": bet.stage,
            "arrived_at": bet.updated_at,
            "handoff_s": round(max((now - bet.updated_at).total_seconds(), 0.0), 3),
        }
        for bet in bets
    }


def annotate(entries: list[dict[str, Any]], pickups: dict[str, dict[str, Any]]) -> None:
    """Add each bet's pickup fields (from :func:`picked_up`) to its heartbeat-record entry."""
    for entry in entries:
        entry.update(pickups.get(str(entry.get("bet_id")), {}))


class Handoff(BaseModel):
    """Handoff latency at one stage for one agent: count, median and 95th percentile (s)."""

    model_config = ConfigDict(frozen=True)

    stage: str
    agent: str
    bets: int
    median_s: float
    p95_s: float
    max_s: float


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of ``values`` (``share`` in 0..1); 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def first_pickups(docs: Iterable[Document]) -> dict[tuple[str, int], tuple[str, str, float]]:
    """(bet, seq) -> (stage, agent, seconds) of its first pickup, from heartbeat records."""
    first: dict[tuple[str, int], tuple[str, str, float]] = {}
    for doc in docs:
        entries = doc.get("bets")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict):
                continue
            wait, stage, seq = entry.get("handoff_s"), entry.get("stage"), entry.get("seq")
            if not isinstance(wait, int | float) or not isinstance(stage, str) or not isinstance(seq, int):
                continue  # records written before handoffs were recorded, or a corrupt bet
            key = (str(entry.get("bet_id")), seq)
            if key not in first or wait < first[key][2]:
                first[key] = (stage, str(doc.get("agent")), float(wait))
    return first


def handoffs(db: Database[Document], since: datetime) -> list[Handoff]:
    """Handoff latency per stage and agent over the heartbeats started since ``since``."""
    with reading("handoff latency"):
        docs = list(db[HEARTBEATS].find({"started_at": {"$gte": since}}, {"agent": 1, "bets": 1}))
    return summarise(first_pickups(docs).values())


def summarise(pickups: Iterable[tuple[str, str, float]]) -> list[Handoff]:
    """Group (stage, agent, seconds) pickups into one :class:`Handoff` per stage and agent."""
    groups: dict[tuple[str, str], list[float]] = {}
    for stage, agent, wait in pickups:
        groups.setdefault((stage, agent), []).append(wait)
    return [
        Handoff(
            stage=stage,
            agent=agent,
            bets=len(waits),
            median_s=percentile(waits, 0.5),
            p95_s=percentile(waits, 0.95),
            max_s=max(waits),
        )
        for (stage, agent), waits in sorted(groups.items())
    ]
