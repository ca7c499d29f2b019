"""Which queue a task lands in: a heartbeat goes to its agent's queue however it is sent.

Celery calls :func:`route_task` for every ``apply_async``/``send_task``, including
``celery -A fleet call fleet.heartbeat --args='["agent"]'`` with no ``--queue``.
"""

from __future__ import annotations

from typing import Any

from fleet.constants import BET_TASK, HEARTBEAT_TASK, OPS_QUEUE
from fleet.definitions.catalogue import Registry, get_registry

__all__ = ["OPS_QUEUE", "queue_names", "route_task"]


def queue_names(registry: Registry | None = None) -> list[str]:
    """Every queue: one per stage group in the catalogue (default: this process's), plus ``ops``."""
    fleet_registry = registry if registry is not None else get_registry()
    return sorted({OPS_QUEUE, *fleet_registry.queues()})


def route_task(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict[str, str]:
    """Celery router: heartbeats and bet tasks by agent, everything else to ``ops``."""
    if name not in (HEARTBEAT_TASK, BET_TASK):
        return {"queue": OPS_QUEUE}
    agent = _agent_argument(args, kwargs)
    spec = get_registry().get(agent) if isinstance(agent, str) else None
    return {"queue": spec.queue if spec else OPS_QUEUE}


def _agent_argument(args: Any, kwargs: Any) -> object:
    if isinstance(kwargs, dict) and "agent" in kwargs:
        return kwargs["agent"]
    if isinstance(args, list | tuple) and args:
        return args[0]
    return None
