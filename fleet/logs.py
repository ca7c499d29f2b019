"""Compact heartbeat logs: one line per heartbeat, the decision trace only in debug mode.

Format (seed, "Log flooding"): timestamp, agent, heartbeat type, actions,
duration. Production logs say what happened; re-run with debug to see why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

logger = logging.getLogger("fleet.heartbeat")


def format_actions(actions: Mapping[str, int]) -> str:
    """``claimed=4 advanced=2 rejected=1``: non-zero counts in a stable order."""
    parts = [f"{name}={count}" for name, count in sorted(actions.items()) if count]
    return " ".join(parts) or "idle"


def compact_line(
    at: datetime, agent: str, kind: str, status: str, actions: Mapping[str, int], duration_s: float
) -> str:
    """The one line a heartbeat logs."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} {agent} {kind} {status} {format_actions(actions)} ({duration_s:.2f}s)"


def emit(line: str, trace: Iterable[str] = ()) -> None:
    """Log the compact line, then the decision trace (non-empty only in debug mode)."""
    logger.info(line)
    for step in trace:
        logger.info("  . %s", step)
