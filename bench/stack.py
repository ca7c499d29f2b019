"""Benchmarks start their own Redis and FerretDB on free ports, like the tests do."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fleet.ops import services as svc

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def bench_stack(
    db_name: str = "fleet_bench", extra: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """Start Redis and FerretDB in a temporary folder; yield the FLEET_* environment.

    ``extra`` (a module's own fleet: ``FLEET_CATALOGUE``, ``FLEET_PIPELINE``) is in the
    process environment only while the stack is up, like the stack's own variables; every
    setting, registry and client cached in this process is dropped on the way in and out.

    ``FLEET_BENCH_MONGO_URL`` points the benchmarks at any MongoDB-wire server instead
    of a fresh FerretDB (the database ``db_name`` on it is dropped first).
    """
    external = os.environ.get("FLEET_BENCH_MONGO_URL") or None
    services, env = svc.isolated("fleet-bench-", ROOT / ".fleet" / "bin", db_name, external)
    saved = dict(os.environ)
    os.environ.update({**env, **(extra or {})})
    _forget_clients()  # each bench module has its own stack: settings and clients made afresh
    svc.up(services)
    try:
        if external:
            _drop(external, db_name)
        yield env
    finally:
        _forget_clients()
        svc.down(services)
        shutil.rmtree(services[0].home, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)
        _forget_clients()


def _forget_clients() -> None:
    """Drop what this process cached for a stack (settings, registry, store clients, the
    process-wide Celery app): the next bench module's stack has other ports and its own fleet."""
    from fleet.definitions.catalogue import get_registry
    from fleet.settings import get_settings
    from fleet.store import close_clients

    get_settings.cache_clear()
    get_registry.cache_clear()
    close_clients()
    app_module = sys.modules.get("fleet.app.celery_app")
    app = getattr(app_module, "_APP", None)
    if app is not None:
        app.close()
        app_module._APP = None  # type: ignore[union-attr]


def _drop(url: str, db_name: str) -> None:
    from pymongo import MongoClient

    with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(db_name)


@contextmanager
def worker(
    app: str, queues: str, concurrency: int, env: dict[str, str], log: Path, pool: str | None = None
) -> Iterator[None]:
    """A real ``celery -A <app> worker`` process (``pool``: Celery's ``-P``), ready when the block starts."""
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-Q",
        queues,
        "-c",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
        "-n",
        f"bench{time.monotonic_ns()}@%h",
        *(["-P", pool] if pool else []),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while "ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)  # poll: wait for the worker with a deadline
    try:
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
