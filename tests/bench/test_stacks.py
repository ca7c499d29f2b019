"""Bench modules run one after another in one process, each on its own stack: nothing cached
for an earlier module's (stopped) Redis or store is used by a later one."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import ROOT

#: Two stacks in a row in one process, sending through what the bench modules use.
SCRIPT = """
from bench.stack import bench_stack
from bench.rawapp import sender
from bench.bench_scale import FLEET_ENV
from fleet.definitions.catalogue import get_registry
from fleet.app.celery_app import get_app
from fleet.definitions.pipeline import load_pipeline
from fleet.settings import get_settings
from fleet.store import database, redis_client

default = load_pipeline(None).name
for round, extra in ((1, FLEET_ENV), (2, None)):
    with bench_stack(extra=extra) as env:
        assert get_settings().broker_url == env["FLEET_BROKER_URL"]
        # a module's own fleet is its alone
        assert (get_registry().pipeline.name == default) == (extra is None), get_registry().pipeline.name
        with sender() as raw:
            raw.send_task("raw.noop", queue="raw")
        get_app().send_task("fleet.heartbeat", args=["idler"], queue="bench")
        database(get_settings())["probe"].insert_one({"round": round})
        queued = redis_client(env["FLEET_BROKER_URL"]).llen("raw")
        assert queued == 1, queued
        print("round", round, "ok")
"""


def test_two_bench_stacks_in_a_row_in_one_process_each_use_their_own_clients() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split("\n")[:2] == ["round 1 ok", "round 2 ok"]
