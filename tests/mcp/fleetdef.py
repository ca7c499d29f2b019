"""The default fleet with the source validation gate as a command agent moving through MCP."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from fleet.defaults.catalogue import CATALOGUE as DEFAULT

AGENT = Path(__file__).resolve().parents[2] / "examples" / "deterministic_agent.py"

CATALOGUE = copy.deepcopy(DEFAULT)
for _spec in CATALOGUE["agents"]:
    if _spec["name"] == "source_validation_gate":
        _spec["handler"] = {"command": [sys.executable, str(AGENT), "mcp"], "timeout_s": 60}

#: The gate as a command agent reporting $0.40 per bet, fanned out (10 at once, 5 per heartbeat).
SPENDING = copy.deepcopy(DEFAULT)
for _spec in SPENDING["agents"]:
    if _spec["name"] == "source_validation_gate":
        _spec["handler"] = {"command": [sys.executable, str(AGENT), "spend", "0.4"], "timeout_s": 60}
        _spec.update(fan_out=10, batch_size=5)
