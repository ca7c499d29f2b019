"""Flower watches the fleet's queues, behind basic auth, on loopback."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from fleet.services import free_port

from ..conftest import ROOT, wait_for
from .conftest import TEST_FLEET_ENV

pytestmark = pytest.mark.slow


@pytest.fixture
def flower(stack, start_worker, tmp_path) -> Iterator[int]:
    start_worker(queues="alpha,beta,ops", **TEST_FLEET_ENV)
    port = free_port()
    log = (tmp_path / "flower.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fleet",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
            "--basic-auth=ops:s3cret",
            f"--db={tmp_path / 'flower.db'}",
        ],
        cwd=ROOT,
        env={**os.environ, **stack.env, **TEST_FLEET_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield port
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)
    log.close()


def get(port: int, path: str, auth: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except OSError:
        return 0, b""


def test_flower_reports_the_fleet_queue_lengths_with_basic_auth(flower, redis) -> None:
    # Given Flower and a worker serving the test fleet's queues
    def queues() -> list[str]:
        status, body = get(flower, "/api/queues/length", "ops:s3cret")
        return [q["name"] for q in json.loads(body)["active_queues"]] if status == 200 else []

    # Then the queue-length API lists them
    names = wait_for(queues, 60, "Flower's queue lengths")
    assert {"alpha", "beta", "ops"} <= set(names)
    # And refuses without credentials, or with wrong ones
    assert get(flower, "/api/queues/length", None)[0] == 401
    assert get(flower, "/api/queues/length", "ops:wrong")[0] == 401
