"""Flower watches the fleet's queues, behind basic auth, on loopback."""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.ops.services import free_port

from ..conftest import ROOT, wait_for
from ..runtime.conftest import TEST_FLEET_ENV

pytestmark = pytest.mark.slow


def start_flower(stack, tmp_path, port: int, **env: str) -> subprocess.Popen[bytes]:
    """Flower as the Procfile starts it: credentials from the environment, not argv."""
    log = (tmp_path / "flower.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fleet",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
            "--conf=flowerconfig.py",
            f"--db={tmp_path / 'flower.db'}",
        ],
        cwd=ROOT,
        env={**os.environ, **stack.env, **TEST_FLEET_ENV, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture
def flower(stack, start_worker, tmp_path) -> Iterator[int]:
    start_worker(queues="alpha,beta,ops", **TEST_FLEET_ENV)
    port = free_port()
    proc = start_flower(stack, tmp_path, port, FLEET_FLOWER_USER="ops", FLEET_FLOWER_PASSWORD="s3cret")
    yield port
    # The password was never on a command line (``ps`` shows every user's)
    assert b"s3cret" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)


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


def test_flower_started_the_procfiles_way_listens_on_the_configured_port(stack, tmp_path) -> None:
    # Given the Procfile's flower line (no --port or --address: flowerconfig.py reads settings)
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("flower:"))
    argv = shlex.split(line.split(":", 1)[1])
    assert argv[0] == "celery" and not any(a.startswith(("--port", "--address")) for a in argv)
    port = free_port()
    env = {**os.environ, **stack.env, **TEST_FLEET_ENV, "FLEET_FLOWER_PORT": str(port),
           "FLEET_FLOWER_ADDRESS": "127.0.0.1", "FLEET_FLOWER_PASSWORD": "s3cret"}  # fmt: skip
    # When it starts with FLEET_FLOWER_PORT set
    with (tmp_path / "flower.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv, f"--db={tmp_path / 'flower.db'}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        # Then Flower answers on that port, behind basic auth
        wait_for(lambda: get(port, "/api/queues/length", "fleet:s3cret")[0] == 200 or proc.poll() is not None,
                 60, "Flower on FLEET_FLOWER_PORT")  # fmt: skip
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()
        assert get(port, "/api/queues/length", None)[0] == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_flower_refuses_to_start_without_a_password(stack, tmp_path) -> None:
    proc = start_flower(stack, tmp_path, free_port())
    assert proc.wait(timeout=60) == 2
    output = (tmp_path / "flower.log").read_text()
    assert "error: FLEET_FLOWER_PASSWORD is not set" in output and "Traceback" not in output


def test_flower_warns_when_it_runs_on_the_demo_password(stack, tmp_path) -> None:
    port = free_port()
    proc = start_flower(stack, tmp_path, port, FLEET_FLOWER_PASSWORD="fleet")
    try:
        wait_for(lambda: get(port, "/api/queues/length", "fleet:fleet")[0] == 200, 60, "Flower up")
        assert "warning: Flower uses the demo password" in (tmp_path / "flower.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_fleet_up_refuses_a_procfile_with_flower_when_no_password_is_set(stack, tmp_path) -> None:
    from ..cli.conftest import assert_one_line_error, run_cli

    procfile = tmp_path / "Procfile"
    procfile.write_text((ROOT / "Procfile").read_text())
    ran = run_cli("up", "--procfile", str(procfile))
    assert_one_line_error(ran, "starts Flower, which needs FLEET_FLOWER_PASSWORD")


def test_flower_turns_on_task_events_so_it_shows_heartbeats_as_they_run(flower, redis) -> None:
    # Given a worker started without task events (FLEET_TASK_EVENTS is off by default) and Flower
    from fleet.app.celery_app import make_app
    from fleet.settings import load_settings

    app = make_app(load_settings())
    assert app.conf.worker_send_task_events is False

    def heartbeats_seen() -> list[str]:
        # When heartbeats run (one per poll: those that ran before Flower reached the worker
        # sent no events)
        app.send_task("fleet.heartbeat", args=["checker"], queue="alpha").get(timeout=30)
        status, body = get(flower, "/api/tasks?limit=50", "ops:s3cret")
        tasks = json.loads(body).values() if status == 200 else []
        return [t["uuid"] for t in tasks if (t.get("name"), t.get("state")) == ("fleet.heartbeat", "SUCCESS")]

    # Then Flower has turned the worker's events on and lists them as succeeded
    assert wait_for(heartbeats_seen, 60, "Flower to list a heartbeat")
