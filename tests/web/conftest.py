"""Fixtures for the web console: the real app over the session's FerretDB and Redis, and a seeded fleet."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis as redis_lib
from pymongo.database import Database
from starlette.testclient import TestClient

from fleet.board import Board, Origin
from fleet.definitions.catalogue import Registry, get_registry
from fleet.definitions.protocols import load_protocols
from fleet.ledger import Bet, Enforcer
from fleet.ops.services import free_port, port_open
from fleet.settings import Settings, get_settings
from fleet.store import Document
from fleet.web.app import create_app

from ..conftest import ROOT, Stack, wait_for

USER, PASSWORD = "ops", "s3cret-for-tests"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


AUTH = basic(USER, PASSWORD)


@pytest.fixture
def web_settings(stack: object) -> Settings:
    return get_settings().model_copy(update={"web_user": USER, "web_password": PASSWORD})


@pytest.fixture
def client(db: Database[Document], redis: redis_lib.Redis, web_settings: Settings) -> Iterator[TestClient]:
    """The console over the clean test database, the default pipeline and catalogue; logged in."""
    with TestClient(create_app(web_settings), headers=AUTH, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def anonymous(db: Database[Document], redis: redis_lib.Redis, web_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings), follow_redirects=False) as test_client:
        yield test_client


@dataclass
class Seeded:
    """A small fleet state: bets at several stages, one refusal, one open board task."""

    registry: Registry
    enforcer: Enforcer
    bets: list[Bet]
    moved: Bet
    task_id: str


@pytest.fixture
def seeded(db: Database[Document]) -> Seeded:
    registry = get_registry()
    pipeline = registry.pipeline
    enforcer = Enforcer(db, pipeline)
    stamp = load_protocols(get_settings().protocols_dir).stamp
    creator = pipeline.creators[0]
    bets = [enforcer.create_bet(creator, {"idea": f"idea {i}"}, stamp=stamp) for i in range(4)]
    first_edge = pipeline.edges_from(pipeline.initial_stage)[0]
    moved = enforcer.advance(
        bets[0].bet_id,
        first_edge.dest,
        first_edge.owner,
        0,
        verdict="pass",
        evidence={"score": 0.9},
        stamp=stamp,
    )
    with pytest.raises(Exception, match="refused|owner|not"):
        enforcer.advance(bets[1].bet_id, first_edge.dest, creator, 0, verdict="rogue")
    task, _ = Board(db).file(
        assignee="ceo", origin=Origin.STRANDED, dedupe_key="k1", title="look at this", by="ceo"
    )
    return Seeded(registry, enforcer, bets, moved, task.task_id)


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "the page has no anti-forgery token"
    return found.group(1)


def close_url(task_id: str) -> str:
    """Where a task's close form posts (task ids hold ``#``, so they are quoted)."""
    return f"/board/{quote(task_id, safe='')}/close"


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def server(stack: Stack, tmp_path: Path) -> Iterator[Server]:
    """``python -m fleet.web`` on a free port, credentials and a 1 s refresh from its environment."""
    port = free_port()
    env = {
        **os.environ,
        **stack.env,
        "FLEET_WEB_USER": USER,
        "FLEET_WEB_PASSWORD": PASSWORD,
        "FLEET_WEB_PORT": str(port),
        "FLEET_WEB_REFRESH_S": "1",
    }
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.web"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 60, "the web console to listen")
        assert proc.poll() is None, log.read_text()
        yield Server(f"http://127.0.0.1:{port}", proc, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def queued_keys(redis: redis_lib.Redis) -> list[bytes]:
    """Redis keys other than the ledger's running counts (fleet.ledger.tally): what was sent or set."""
    return [key for key in redis.scan_iter() if not key.startswith(b"fleet:tally")]
