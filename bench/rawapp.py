"""A raw Celery app: a no-op task (the heartbeat baseline) and an I/O task (the drain baseline)."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

app = Celery("raw", broker=os.environ["FLEET_BROKER_URL"], backend=os.environ["FLEET_BROKER_URL"])
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="raw",
    broker_connection_retry_on_startup=True,
)


@app.task(name="raw.noop")
def noop() -> None:
    """Do nothing: the round trip is all broker, worker and result backend."""


@app.task(name="raw.io", ignore_result=True)
def io(seconds: float) -> None:
    """Wait ``seconds`` (a handler's I/O), then count one done: the scale bench's raw baseline."""
    time.sleep(seconds)
    _counter().incr(RAW_DONE_KEY)


RAW_DONE_KEY = "raw:done"


def _counter() -> redis.Redis:
    return redis.Redis.from_url(os.environ["FLEET_BROKER_URL"])
