"""The default fleet: agent specs as data, one row per agent.

Pipeline agents own transitions of :mod:`fleet.defaults.pipeline`; the schedule
of each group follows the seed's stagger (sourcing at 01/07/13/19 UTC, the
validation gates 30 minutes later, other groups at other hours).
"""

from __future__ import annotations

from typing import Any

from fleet.defaults.pipeline import GATES, PIPELINE, SCOUTS

#: The protocol version these specs were written for (see protocols/).
PROTOCOL_VERSION = "1.0"

QUEUES = ["sourcing", "validation", "build", "ads", "outreach", "content", "infra", "ops"]

#: group -> (UTC hours, base minute): the seed's staggered schedule.
GROUP_SCHEDULE: dict[str, tuple[list[int], int]] = {
    "sourcing": ([1, 7, 13, 19], 0),
    "validation": ([1, 7, 13, 19], 30),
    "build": ([3, 9, 15, 21], 0),
    "ads": ([4, 10, 16, 22], 0),
    "outreach": ([5, 11, 17, 23], 0),
    "content": ([2, 8, 14, 20], 0),
    "infra": ([0, 6, 12, 18], 15),
    "ops": ([0, 3, 6, 9, 12, 15, 18, 21], 45),
}


def _owned(agent: str) -> list[list[str]]:
    return [[t["from"], t["to"]] for t in PIPELINE["transitions"] if t["owner"] == agent]


def _polled(agent: str) -> list[str]:
    return sorted({t["from"] for t in PIPELINE["transitions"] if t["owner"] == agent})


def spec(name: str, group: str, handler: str, role: str, **extra: Any) -> dict[str, Any]:
    """One agent row; pipeline agents get their polls and owned edges from the pipeline."""
    hours, minute = GROUP_SCHEDULE[group]
    return {
        "name": name,
        "role": role,
        "group": group,
        "queue": group,
        "schedule": {"hours": hours, "minute": minute},
        "polls": _polled(name),
        "owns": _owned(name),
        "protocol_version": PROTOCOL_VERSION,
        "handler": handler,
        **extra,
    }


_SCOUTS = [
    spec(n, "sourcing", "fleet.sim:scout", "finds raw ideas", creates=True, expected_seconds=120)
    for n in SCOUTS
]
_GATES = [
    spec(agent, "validation", "fleet.sim:gate", f"validation gate {i}: {src} -> {dest}")
    for i, (agent, src, dest) in enumerate(GATES, start=1)
]
_BUILD = [
    spec("lp_builder", "build", "fleet.sim:gate", "builds the landing page", expected_seconds=180),
    spec("lp_launcher", "build", "fleet.sim:gate", "deploys and tracks the landing page"),
]
_ADS = [
    spec("ads_launcher", "ads", "fleet.sim:gate", "launches paid ads on a live page"),
    spec("ads_signal_reader", "ads", "fleet.sim:gate", "reads the ads signal: scale, park or kill"),
    spec("portfolio_reviewer", "ads", "fleet.sim:gate", "revives or kills parked bets"),
]

CATALOGUE: dict[str, Any] = {
    "queues": QUEUES,
    "agents": [*_SCOUTS, *_GATES, *_BUILD, *_ADS],
}
