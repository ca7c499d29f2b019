"""The README's first command in a short bounded run: beat, workers and Flower, for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.definitions.pipeline import load_pipeline
from fleet.ledger import Enforcer
from fleet.ops.services import free_port, port_open
from fleet.settings import load_settings
from fleet.store import database

from ..conftest import ROOT

pytestmark = pytest.mark.slow


def test_a_short_demo_moves_bets_to_terminal_stages_and_stops_everything(stack, db, redis) -> None:
    # (redis: flushed, so heartbeats SIGKILLed by earlier tests do not count against the wake cap)
    # Given the test services (so the demo starts none of its own) and a free Flower port
    flower_port, web_port = free_port(), free_port()
    env = {**os.environ, **stack.env, "FLEET_FLOWER_PORT": str(flower_port), "FLEET_WEB_PORT": str(web_port)}
    # When the demo runs for one minute of wall time, a day lasting 30 s
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleet.cli",
            "demo",
            "--minutes",
            "1",
            "--day-seconds",
            "30",
            "--bets",
            "8",
            "--failure-rate",
            "0.2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    out = done.stdout + done.stderr
    # Then it ends by itself, cleanly, with a summary
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    assert "Summary" in out and "the enforcer refused a rogue move" in out
    assert f"http://127.0.0.1:{flower_port}" in out
    assert f"http://127.0.0.1:{web_port}/" in out
    # And the web console ran beside it (its log is in the demo's log folder)
    logs = Path(re.findall(r"logs: (\S+)", out)[-1])
    assert f"fleet web console on http://127.0.0.1:{web_port}/" in (logs / "web.log").read_text()
    # And the 52 agents ran: heartbeats, transitions, some bets at terminal stages, a clean ledger
    demo_db = database(load_settings().model_copy(update={"mongo_db": f"{stack.env['FLEET_MONGO_DB']}_demo"}))
    pipeline = load_pipeline(None)
    terminal = [s.name for s in pipeline.stages if s.terminal]
    assert demo_db["bets_done"].count_documents({"stage": {"$in": terminal}}) >= 1
    assert demo_db["bets"].count_documents({"stage": {"$in": terminal}}) == 0  # finished bets moved out
    assert len(demo_db["heartbeats"].distinct("agent")) >= 40
    assert int(re.search(r"transitions (\d+)", out).group(1)) >= 1
    assert Enforcer(demo_db, pipeline).verify() == []
    # And arrivals woke their next owners; the summary shows handoff latency per stage
    assert demo_db["heartbeats"].count_documents({"reason": "wake"}) >= 1
    assert "Handoff latency" in out
    # And everything it started is stopped
    assert not port_open(flower_port)
    assert not port_open(web_port)
