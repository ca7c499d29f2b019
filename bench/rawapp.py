"""A raw Celery app with one no-op task: the baseline a fleet heartbeat is compared with."""

from __future__ import annotations

import os

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
