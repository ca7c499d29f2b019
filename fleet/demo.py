"""``fleet demo``: start the local stack, run real workers, show what happens, stop it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fleet import services as svc
from fleet.constants import PROBE_TASK, PROBES
from fleet.settings import LOCAL_MONGO_PORT, LOCAL_REDIS_PORT, Settings, get_settings
from fleet.store import database, ensure_indexes, ping_mongo, ping_redis

console = Console()


@contextmanager
def local_stack(settings: Settings) -> Iterator[None]:
    """Start the local services this settings object asks for; stop what was started."""
    wanted = {"redis": settings.local_redis, "ferretdb": settings.local_mongo}
    every = svc.local_services(settings.home, LOCAL_REDIS_PORT, LOCAL_MONGO_PORT)
    mine = [s for s in every if wanted[s.name] and svc.running_pid(s) is None]
    svc.up(mine)
    try:
        yield
    finally:
        svc.down(mine)


@contextmanager
def celery_process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``celery -A fleet <args>`` in its own process group; stop it on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "fleet", *args],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def run_smoke(settings: Settings, probes: int = 5, timeout: float = 60.0) -> int:
    """Send probes through Redis to a real worker and read them back from the store."""
    from fleet.celery_app import get_app

    with local_stack(settings):
        console.print(f"redis {ping_redis(settings)}, MongoDB-wire store {ping_mongo(settings)}")
        db = database(settings)
        ensure_indexes(db)
        log = settings.home / "logs" / "demo-worker.log"
        with celery_process(["worker", "-Q", "ops", "-c", "2", "-l", "INFO"], log):
            tokens = [uuid.uuid4().hex for _ in range(probes)]
            sent = time.monotonic()
            for token in tokens:
                get_app().send_task(PROBE_TASK, args=[token])
            deadline = sent + timeout
            while time.monotonic() < deadline:
                docs = list(db[PROBES].find({"_id": {"$in": tokens}}))
                if len(docs) == len(tokens):
                    break
                time.sleep(0.1)  # poll: wait for the worker's writes with a deadline
        table = Table("probe", "worker host", "written at")
        for doc in docs:
            table.add_row(str(doc["_id"])[:12], str(doc["host"]), str(doc["at"]))
        console.print(table)
        console.print(f"{len(docs)}/{len(tokens)} probes went broker -> worker -> store "
                      f"in {time.monotonic() - sent:.2f}s (worker log: {log})")  # fmt: skip
        return 0 if len(docs) == len(tokens) else 1


def main() -> int:
    return run_smoke(get_settings())
