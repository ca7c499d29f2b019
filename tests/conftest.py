"""Shared fixtures: one real Redis and one real FerretDB per test session.

The services start on free loopback ports, so a run never collides with services
a developer left running. The ``FLEET_*`` variables are set when pytest
configures, before any fleet module reads its settings. With CI=true a service
that cannot start fails the run; elsewhere the tests that need it are skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_lib
from pymongo.database import Database

from fleet.ledger.tally import Tally
from fleet.ops import services as svc
from fleet.store import Document

ROOT = Path(__file__).resolve().parents[1]
TEST_DB = "fleet_test"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@dataclass
class Stack:
    """The session's services and the environment a subprocess needs to use them."""

    services: list[svc.Service]
    env: dict[str, str] = field(default_factory=dict)


_STACK: Stack | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _STACK
    # FLEET_TEST_MONGO_URL runs the suite against any MongoDB-wire server (its fleet_test
    # database is emptied by the tests) instead of a fresh FerretDB.
    external = os.environ.get("FLEET_TEST_MONGO_URL") or None
    services, env = svc.isolated("fleet-test-", ROOT / ".fleet" / "bin", TEST_DB, external)
    env["FLEET_PROTOCOLS_DIR"] = str(ROOT / "protocols")
    for name in list(os.environ):
        if name.startswith("FLEET_") and name not in env:
            del os.environ[name]  # a developer's own FLEET_* must not leak into tests
    os.environ.update(env)
    _STACK = Stack(services, env)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Start Redis and FerretDB once per session; stop them at the end."""
    assert _STACK is not None
    try:
        svc.up(_STACK.services)
    except svc.ServiceError as exc:
        svc.down(_STACK.services)
        message = f"local services did not start: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    yield _STACK
    from fleet.store import close_clients

    close_clients()
    svc.down(_STACK.services)
    shutil.rmtree(_STACK.services[0].home, ignore_errors=True)


@pytest.fixture
def db(stack: Stack) -> Database[Document]:
    """The test database, emptied (with fleet's indexes recreated) before each test."""
    from fleet.settings import get_settings
    from fleet.store import database, ensure_indexes

    database_ = database(get_settings())
    for name in database_.list_collection_names():
        database_.drop_collection(name)
    ensure_indexes(database_)
    Tally.for_db(database_).forget()  # counts of the last test's ledger: rebuilt on first read
    return database_


@pytest.fixture
def redis(stack: Stack) -> Iterator[redis_lib.Redis]:
    """The broker's Redis, flushed before each test."""
    client = redis_lib.Redis.from_url(stack.env["FLEET_BROKER_URL"])
    client.flushdb()
    yield client
    client.close()


# --- real Celery worker processes -------------------------------------------------


@dataclass
class Worker:
    """A ``celery -A fleet worker`` subprocess."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(condition: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # poll: condition with a deadline
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def celery_process(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A Celery command (worker, beat, ...) in its own session, output to ``log``, env on top of ours."""
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def start_worker(stack: Stack, redis: redis_lib.Redis, tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Factory: start a real worker on some queues; every worker is stopped after the test."""
    started: list[Worker] = []

    def start(queues: str = "ops", concurrency: int = 1, name: str = "w1", **env: str) -> Worker:
        log = tmp_path / f"{name}.log"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fleet",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ]
        proc = celery_process(cmd, {**stack.env, **env}, log)
        worker = Worker(name, proc, log)
        started.append(worker)
        wait_for(lambda: "ready." in worker.output() or proc.poll() is not None, 60, f"{name} ready")
        if proc.poll() is not None:
            raise AssertionError(f"worker {name} exited:\n{worker.output()[-3000:]}")
        return worker

    yield start
    for worker in started:
        worker.stop()
