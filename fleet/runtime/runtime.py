"""The per-process runtime: connections, definitions and thread pools, built after Celery forks."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
from pymongo.database import Database

from fleet.board import Board
from fleet.definitions.catalogue import Registry, get_registry
from fleet.ledger import Enforcer
from fleet.settings import Settings, get_settings
from fleet.store import database, ensure_indexes, redis_client

#: Threads per process for ``ctx.gather`` (independent lookups inside one heartbeat).
LOOKUP_THREADS = 8
#: Bets of one heartbeat handled at once: they are independent, and most of a bet's time is I/O.
BET_THREADS = 4
#: Threads per process for a heartbeat's own store reads and writes that overlap each other
#: (apart from the lookup pool, so a handler's slow lookups never delay a heartbeat's record).
IO_THREADS = 8


@dataclass
class Runtime:
    """Per-process connections and definitions, built after Celery forks its children."""

    settings: Settings
    registry: Registry
    db: Database[dict[str, Any]]
    redis: redis.Redis
    enforcer: Enforcer
    board: Board
    pool: ThreadPoolExecutor
    bet_pool: ThreadPoolExecutor
    io_pool: ThreadPoolExecutor

    @classmethod
    def build(cls, settings: Settings | None = None, registry: Registry | None = None) -> Runtime:
        settings = settings or get_settings()
        registry = registry or get_registry()
        db = database(settings)
        ensure_indexes(db, settings)  # before this process takes its first task (idempotent)
        return cls(
            settings=settings,
            registry=registry,
            db=db,
            redis=redis_client(settings.broker_url),
            enforcer=Enforcer(db, registry.pipeline),
            board=Board(db),
            pool=ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="fleet-lookup"),
            bet_pool=ThreadPoolExecutor(BET_THREADS, thread_name_prefix="fleet-bet"),
            io_pool=ThreadPoolExecutor(IO_THREADS, thread_name_prefix="fleet-io"),
        )


_RUNTIMES: dict[int, Runtime] = {}


def get_runtime() -> Runtime:
    """This process's runtime (one per pid: connections are not fork-safe)."""
    runtime = _RUNTIMES.get(os.getpid())
    if runtime is None:
        runtime = _RUNTIMES[os.getpid()] = Runtime.build()
    return runtime
