"""Agent specs for the small fleets the tests load by import path, as a user loads their own."""

from __future__ import annotations

from typing import Any


def agent_spec(name: str, queue: str, handler: str, hours: list[int], **extra: Any) -> dict[str, Any]:
    """One agent on ``queue`` (its group too), scheduled at ``hours``, its handler ``module:function``."""
    return {
        "name": name,
        "group": queue,
        "queue": queue,
        "schedule": {"hours": hours},
        "protocol_version": "1.0",
        "handler": handler,
        **extra,
    }
