"""A raw Celery app: a no-op task (the heartbeat baseline), the floor of any recorded heartbeat,
and an I/O task (the drain baseline).

Its workers (``celery -A bench.rawapp``) read the broker from their environment at start.
The bench process sends through :func:`sender`, made afresh for the stack that is up: an
app kept from an earlier bench module would point at a Redis that has since stopped.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

CONF: dict[str, Any] = {
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
    "task_default_queue": "raw",
    "broker_connection_retry_on_startup": True,
}


def _app(name: str) -> Celery:
    broker = os.environ["FLEET_BROKER_URL"]
    made = Celery(name, broker=broker, backend=broker, set_as_current=False)
    made.conf.update(CONF)
    return made


app = _app("raw")


def sender() -> Celery:
    """A client app for the raw tasks over the current stack's broker (close it when done)."""
    return _app("raw-sender")


@app.task(name="raw.noop")
def noop() -> None:
    """Do nothing: the round trip is all broker, worker and result backend."""


@app.task(name="raw.io", ignore_result=True)
def io(seconds: float) -> None:
    """Wait ``seconds`` (a handler's I/O), then count one done: the scale bench's raw baseline."""
    time.sleep(seconds)
    _counter().incr(RAW_DONE_KEY)


RAW_DONE_KEY = "raw:done"


@app.task(name="raw.floor")
def floor(token: str) -> None:
    """What any heartbeat that keeps a durable record must do at least: take and let go of a
    Redis lock, and insert one document into the store. Not a goal: it shows how much of the
    idle heartbeat's ratio is the record itself."""
    lock = _counter().lock("raw:lock", timeout=30)
    lock.acquire(blocking=False, token=token)
    _store().insert_one({"_id": token})
    lock.release()


def _store() -> Any:
    url = os.environ["FLEET_MONGO_URL"]
    if url not in _STORES:  # keyed by URL: a store of another stack is never reused
        from pymongo import MongoClient

        _STORES[url] = MongoClient(url)[os.environ["FLEET_MONGO_DB"]]["raw_floor"]
    return _STORES[url]


_STORES: dict[str, Any] = {}


def _counter() -> redis.Redis:
    return redis.Redis.from_url(os.environ["FLEET_BROKER_URL"])
