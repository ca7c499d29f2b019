"""A command agent run by a real Celery worker, moving a bet through the real ``fleet mcp``."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from fleet.constants import HEARTBEATS
from fleet.definitions.pipeline import load_pipeline
from fleet.ledger import Bet, Enforcer
from fleet.store import Document
from tests.conftest import wait_for
from tests.mcp.conftest import SECRET, McpServer

pytestmark = pytest.mark.slow


def test_a_worker_runs_a_command_agent_that_moves_through_mcp(
    db: Database[Document], mcp_server: McpServer, start_worker: Any, bet: Bet
) -> None:
    from fleet.app.celery_app import make_app
    from fleet.settings import load_settings

    env = {"FLEET_CATALOGUE": "tests.mcp.fleetdef:CATALOGUE", "FLEET_MCP_SECRET": SECRET,
           "FLEET_MCP_URL": mcp_server.url}  # fmt: skip
    start_worker(queues="validation", **env)
    make_app(load_settings()).send_task(
        "fleet.heartbeat", args=["source_validation_gate"], queue="validation"
    )
    beat = wait_for(
        lambda: db[HEARTBEATS].find_one({"agent": "source_validation_gate"}), 120, "the heartbeat"
    )
    assert isinstance(beat, dict) and beat["status"] == "ok", beat.get("error")
    assert beat["bets"][0]["outcome"] == "moved via mcp"
    enforcer = Enforcer(db, load_pipeline(None))
    assert enforcer.get(bet.bet_id).stage == "source_validated"
    assert enforcer.history(bet.bet_id)[1].heartbeat_id == beat["_id"]
    assert enforcer.verify() == []
