"""The Celery application: broker, queues, routing and every failure-handling choice.

``celery -A fleet worker|beat|flower|call|inspect`` finds this app through
:mod:`fleet.celery`. Settings come from :mod:`fleet.settings`; queue names come from
the agent catalogue so a heartbeat lands in its agent's queue however it is sent.
The beat schedule is not built here: only beat builds it (``beat_schedule.Scheduler``).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from fleet.app.routing import queue_names
from fleet.constants import OPS_QUEUE
from fleet.definitions.catalogue import Registry, get_registry
from fleet.definitions.protocols import DEFAULT_TASK_RETRY
from fleet.settings import Settings, get_settings

#: Celery's hard limit for any task that is not a heartbeat of a known agent (s); heartbeats
#: run under their agent's own limits (``AgentSpec.time_limits``, see tasks.heartbeat).
TASK_TIME_LIMIT = 3660

#: Redis redelivers a message not acked this long (s) after delivery (its worker died) on top
#: of the longest heartbeat's hard limit (or the longest retry delay): shorter, and a running
#: heartbeat would be delivered twice; much longer, and a dead host's heartbeat expires first.
REDELIVERY_MARGIN_S = 300

#: Beat's scheduler: Celery's file-backed one, ticking only while it holds the fleet's beat lock
#: (fleet.app.beat), plus the fleet's entries built when beat starts.
BEAT_SCHEDULER = "beat_schedule:Scheduler"

#: Modules holding task definitions; workers import them at start.
TASK_MODULES = ["tasks.heartbeat", "tasks.bet", "tasks.probe"]


def make_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app from settings (tests build their own with other URLs)."""
    settings = settings or get_settings()
    app = Celery("fleet", broker=settings.broker_url, include=TASK_MODULES)
    app.conf.update(_config(settings))
    return app


def visibility_timeout(registry: Registry | None = None) -> int:
    """Seconds after which Redis redelivers an unacked heartbeat (its worker died).

    The longest agent hard limit (or Celery retry delay) plus :data:`REDELIVERY_MARGIN_S`:
    1,500 s for the default catalogue (its longest time limit is 1,200 s).
    """
    fleet_registry = registry if registry is not None else get_registry()
    longest = max([DEFAULT_TASK_RETRY.backoff_max_s, *(spec.time_limit for spec in fleet_registry)])
    return int(longest) + REDELIVERY_MARGIN_S


#: Reconnects to the result store before a caller gives up (Celery's default: 20 of 1 s each).
RESULT_RECONNECT_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
#: Seconds to wait for a TCP connection to the result store's Redis (an unroutable host).
REDIS_CONNECT_TIMEOUT_S = 5


def _config(settings: Settings) -> dict[str, Any]:
    redelivery = visibility_timeout()
    return {
        # Results (for `celery call` users) in Redis, kept a day; the record of truth is MongoDB.
        "result_backend": settings.broker_url,
        "result_expires": 86400,
        # A caller (`celery call`, `.get()`) that cannot reach Redis fails in ~2 s, not after
        # Celery's 20 reconnects of 1 s to the result store (workers ignore results anyway).
        "result_backend_transport_options": {
            "visibility_timeout": redelivery,
            "retry_policy": RESULT_RECONNECT_POLICY,
        },
        "redis_socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # A SIGKILLed worker's heartbeat comes back instead of vanishing (heartbeats are idempotent).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # With acks_late, reserve one message per process so a dead process strands at most one.
        "worker_prefetch_multiplier": 1,
        # A Redis blip does not cut running heartbeats mid-write: they finish, and a late ack that
        # is lost only means a redelivery, which finds the heartbeat's record and does nothing.
        "worker_cancel_long_running_tasks_on_connection_loss": settings.cancel_on_connection_loss,
        # Keep retrying the broker at start instead of dying when Redis starts second.
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": redelivery},
        "task_default_queue": OPS_QUEUE,
        "task_queues": [Queue(name) for name in queue_names()],
        "task_routes": ("fleet.app.routing.route_task",),
        # Task events cost a Redis publish per task state on every task, watched or not. Flower
        # turns them on in every worker while it runs (its enable_events option, on by default),
        # so it still shows tasks as they run; FLEET_TASK_EVENTS=1 sends them from the start
        # (for other event consumers). Senders always mark tasks sent, which is cheap.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        # Limits of any other task; a heartbeat gets its agent's own (tasks.heartbeat).
        "task_time_limit": TASK_TIME_LIMIT,
        "task_soft_time_limit": TASK_TIME_LIMIT - 30,
        # Only beat builds the per-agent schedule (workers, Flower and `celery call` never need it).
        "beat_scheduler": BEAT_SCHEDULER,
        # Compressed-time demos need beat to wake more often than every 5 minutes.
        "beat_max_loop_interval": min(300.0, settings.day_seconds / 24 / 60 * 5),
    }


_APP: Celery | None = None


def get_app() -> Celery:
    """The process-wide app (what ``celery -A fleet`` and the task modules use)."""
    global _APP
    if _APP is None:
        _APP = make_app()
    return _APP
