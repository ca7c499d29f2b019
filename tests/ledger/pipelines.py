"""Small pipelines for the ledger tests, as plain data (what a user's YAML would hold)."""

from __future__ import annotations

from typing import Any


def small() -> dict[str, Any]:
    """Five stages and every kind of edge: new -> checked -> done, with kill, park and revive."""
    return {
        "name": "small",
        "initial_stage": "new",
        "creators": ["maker", "scout"],
        "stages": [
            {"name": "new", "sla_hours": 1},
            {"name": "checked"},
            {"name": "parked"},
            {"name": "done", "terminal": True},
            {"name": "dropped", "terminal": True},
        ],
        "transitions": [
            {"from": "new", "to": "checked", "owner": "checker", "kind": "advance"},
            {"from": "new", "to": "dropped", "owner": "checker", "kind": "kill"},
            {"from": "checked", "to": "done", "owner": "closer", "kind": "advance"},
            {"from": "checked", "to": "dropped", "owner": "closer", "kind": "kill"},
            {"from": "checked", "to": "parked", "owner": "closer", "kind": "park"},
            {"from": "parked", "to": "checked", "owner": "reviver", "kind": "revive"},
            {"from": "parked", "to": "dropped", "owner": "reviver", "kind": "kill"},
        ],
    }
