"""The web console: what one refresh of a page and one ``/metrics`` scrape cost, against ``fleet status``.

Metrics, measured in one run on one store holding a working day of a busy fleet
(``BETS`` bets spread along the pipeline, a heartbeat record per 2 transitions):
- ``web_pipeline_vs_status``: seconds for one ``GET /pipeline/live`` (the fragment htmx
  fetches every ``FLEET_WEB_REFRESH_S``) divided by one ``report.status_report`` (one
  refresh of ``fleet status --watch``, the terminal view the console replaces);
- ``web_metrics_vs_status``: the same for one ``GET /metrics`` scrape.

Both go through the real app (Starlette's TestClient, basic auth, templates), in
process, so the ratio is the console's cost over the same store. The console shares the
CEO's audits for 10 s between requests (``fleet status`` runs them every time), so the
medians of back-to-back requests mostly reuse them, as a page left open does.
"""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bench_enforcer import _db, _pipeline, advance_path
from bench.metrics import Metric, publish, say
from bench.stack import bench_stack

BETS = 300
ROUNDS = 7
METRICS = {"web_pipeline_vs_status": "<= 3.0", "web_metrics_vs_status": "<= 3.0"}


def _seed(db: Any) -> None:
    """Bets at every depth of the advance path, and heartbeat records naming them."""
    from fleet.constants import HEARTBEATS
    from fleet.ledger import Enforcer
    from fleet.store import clock

    pipeline = _pipeline()
    enforcer = Enforcer(db, pipeline)
    path = advance_path(pipeline)
    beats = []
    for n in range(BETS):
        bet = enforcer.create_bet(pipeline.creators[n % len(pipeline.creators)], {"idea": f"bench {n}"})
        for to_stage, owner in path[: n % len(path)]:
            bet = enforcer.advance(bet.bet_id, to_stage, owner, bet.seq, verdict="bench", view=bet)
            if bet.seq % 2 == 0:
                now = clock(db).now()
                beats.append(_beat(f"hb-{n}-{bet.seq}", owner, bet.bet_id, bet.seq, now))
    db[HEARTBEATS].insert_many(beats)


def _beat(beat_id: str, agent: str, bet_id: str, seq: int, at: Any) -> dict[str, Any]:
    return {
        "_id": beat_id, "agent": agent, "reason": "scheduled", "status": "ok", "started_at": at,
        "finished_at": at, "duration_s": 0.5, "actions": {"advanced": 1}, "protocol_version": "1.0",
        "protocol_hash": "bench", "worker": "bench:1",
        "bets": [{"bet_id": bet_id, "seq": seq - 1, "outcome": "advanced"}],
    }  # fmt: skip


def _median_s(call: Callable[[], object]) -> float:
    call()  # warm up: first connections, template compilation
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(names: set[str]) -> None:
    from starlette.testclient import TestClient

    from fleet import queries as report
    from fleet.definitions.catalogue import load_registry
    from fleet.settings import load_settings
    from fleet.store import ensure_indexes
    from fleet.web.app import create_app

    db = _db()
    ensure_indexes(db)
    _seed(db)
    settings = load_settings()
    registry = load_registry(None, None)
    protocols = Path(settings.protocols_dir)
    auth = {"Authorization": "Basic " + base64.b64encode(b"fleet:fleet").decode()}
    with TestClient(create_app(settings, registry), headers=auth) as web:
        status_s = _median_s(lambda: report.status_report(db, settings.broker_url, registry, protocols, 60))
        pipeline_s = _median_s(lambda: web.get("/pipeline/live").raise_for_status())
        metrics_s = _median_s(lambda: web.get("/metrics").raise_for_status())
    say(f"{BETS} bets: status {status_s * 1000:.0f} ms, /pipeline/live {pipeline_s * 1000:.0f} ms,"
        f" /metrics {metrics_s * 1000:.0f} ms (medians of {ROUNDS})")  # fmt: skip
    for metric, seconds in (("web_pipeline_vs_status", pipeline_s), ("web_metrics_vs_status", metrics_s)):
        if metric in names:
            detail = f"{seconds * 1000:.0f} ms vs {status_s * 1000:.0f} ms for fleet status"
            publish(Metric(metric, seconds / status_s, METRICS[metric], detail))


def run(names: set[str]) -> None:
    with bench_stack("fleet_bench_web"):
        measure(names)


if __name__ == "__main__":
    run(set(METRICS))
