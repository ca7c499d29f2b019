"""Usage agents report (model tokens in/out, cost) and the daily budgets the protocols set.

Usage comes from three places: the MCP ``report_usage`` tool, the ``"usage"`` object of
an external agent's decision, and ``record`` called by Python code. Each report is one
inserted document (never updated, so concurrent reports are never lost). Spend is
summed per agent over the current UTC day by the store's clock; an agent whose spend
reached its cap in the protocols' ``budgets.daily_usd`` skips its heartbeats.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo.database import Database

from fleet.board import Board, Origin
from fleet.constants import USAGE
from fleet.definitions.protocols import LoadedProtocols
from fleet.errors import FleetError
from fleet.store import Document, clock, translated


class BadUsage(FleetError):
    """A usage report with negative or non-numeric figures; nothing was recorded."""


def record(
    db: Database[Document],
    agent: str,
    heartbeat_id: str | None,
    *,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost_usd: float = 0.0,
    model: str = "",
    bet_id: str | None = None,
) -> None:
    """Store one usage report of ``agent`` (of one bet of its heartbeat, when known)."""
    figures = {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost_usd}
    if any(not isinstance(v, int | float) or isinstance(v, bool) or v < 0 for v in figures.values()):
        raise BadUsage(f"usage figures must be non-negative numbers, got {figures}")
    doc: Document = {"agent": agent, "heartbeat_id": heartbeat_id, "bet_id": bet_id, **figures,
                     "model": str(model)[:100], "at": clock(db).now()}  # fmt: skip
    with translated("usage record"):
        db[USAGE].insert_one(doc)


def record_reported(
    db: Database[Document], agent: str, heartbeat_id: str | None, usage: Any, bet_id: str | None = None
) -> None:
    """Record the ``"usage"`` object of an external agent's answer (ignored when absent)."""
    if usage is None:
        return
    if not isinstance(usage, dict) or set(usage) - {"tokens_in", "tokens_out", "cost_usd", "model"}:
        raise BadUsage(f"usage must be an object of tokens_in, tokens_out, cost_usd, model; got {usage!r}")
    record(db, agent, heartbeat_id, **usage, bet_id=bet_id)


def cost_of(db: Database[Document], agent: str, heartbeat_id: str, bet_id: str | None) -> float:
    """What ``agent`` reported for one bet of a heartbeat (``bet_id`` None: the whole heartbeat)."""
    query: Document = {"agent": agent, "heartbeat_id": heartbeat_id}
    if bet_id is not None:
        query["bet_id"] = bet_id
    with translated("reading usage"):
        return sum(_cost(doc) for doc in db[USAGE].find(query, {"cost_usd": 1}))


def mean_cost(db: Database[Document], agent: str, reports: int) -> float | None:
    """The mean cost of ``agent``'s last ``reports`` usage reports, or None when it has none."""
    with translated("reading usage"):
        docs = list(db[USAGE].find({"agent": agent}, {"cost_usd": 1}).sort("at", -1).limit(reports))
    return sum(_cost(doc) for doc in docs) / len(docs) if docs else None


def _cost(doc: Document) -> float:
    cost = doc.get("cost_usd")
    return float(cost) if isinstance(cost, int | float) else 0.0


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def spend(db: Database[Document], agent: str | None, since: datetime) -> dict[str, float]:
    """Cost per agent (or of one agent) since ``since``, in US dollars."""
    query: Document = {"at": {"$gte": since}}
    if agent is not None:
        query["agent"] = agent
    totals: dict[str, float] = {}
    with translated("reading usage"):
        for doc in db[USAGE].find(query, {"agent": 1, "cost_usd": 1}):
            name = str(doc["agent"])
            totals[name] = totals.get(name, 0.0) + _cost(doc)
    return totals


def over_budget(db: Database[Document], loaded: LoadedProtocols, agent: str) -> str | None:
    """Why ``agent`` may not run today (its spend reached its cap), or None."""
    cap = loaded.protocols.budgets.daily_usd.get(agent)
    if cap is None:
        return None
    spent = spend(db, agent, day_start(clock(db).now())).get(agent, 0.0)
    if spent < cap:
        return None
    return f"over budget: spent ${spent:.2f} of ${cap:.2f} today (protocols budgets.daily_usd)"


def file_budget_task(board: Board, agent: str, owner: str, reason: str, now: datetime) -> None:
    """One open task per agent over budget, for its spec owner (deduplicated by key)."""
    board.file(
        assignee=owner,
        origin=Origin.ESCALATION,
        dedupe_key=f"over-budget:{agent}",
        title=f"{agent} is over its daily budget and skips its heartbeats",
        detail={"reason": reason, "until": (day_start(now) + timedelta(days=1)).isoformat()},
        by=agent,
    )
