"""``/metrics``: the business state in the Prometheus text format, computed at scrape time.

A custom collector reads the shared state on every scrape instead of counting in
the workers. Why: the state is already in the store, written once by whichever
worker did the work, so every number here is the same one the CLI and the audits
see, with no multiprocess counter files to keep in step across Celery's forked
children, machines and restarts. The price is one pass over the collections per
scrape (scrape every 30-60 s, not every second).

Counters come from append-only records: transitions are never pruned, so
``fleet_transitions_total`` only grows. Refusals, heartbeats and claims are
pruned after ``FLEET_RETENTION_DAYS``; their ``_total`` counters can drop when a
pruning runs, which Prometheus reads as a counter reset (use ``rate()`` windows far
shorter than the retention window).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from fleet.web.data import MetricsSnapshot

#: Heartbeat duration buckets, seconds (a heartbeat takes from well under a second to minutes).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class FleetCollector(Collector):
    """Yields every fleet metric from one :class:`MetricsSnapshot` taken per scrape."""

    def __init__(self, snapshot: Callable[[], MetricsSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _stage_metrics(snap)
        yield from _ledger_metrics(snap)
        yield from _heartbeat_metrics(snap)
        yield from _board_metrics(snap)


def registry_for(snapshot: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    """A registry with only the fleet collector (no describe at registration: that would scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(snapshot))
    return registry


def _gauge(name: str, doc: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> Metric:
    return _family(GaugeMetricFamily(name, doc, labels=labels), samples)


def _counter(name: str, doc: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> Metric:
    return _family(CounterMetricFamily(name, doc, labels=labels), samples)


def _family(
    family: GaugeMetricFamily | CounterMetricFamily, samples: Iterable[tuple[list[str], float]]
) -> Metric:
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _stage_metrics(snap: MetricsSnapshot) -> Iterator[Metric]:
    yield _gauge(
        "fleet_bets", "Bets at each stage now.", ["stage"], (([s.name], s.count) for s in snap.stages)
    )
    yield _gauge(
        "fleet_stage_oldest_bet_age_seconds",
        "How long the longest-waiting bet of each stage has been there (0 when the stage is empty).",
        ["stage"],
        (([s.name], s.oldest_age_s or 0.0) for s in snap.stages),
    )
    yield _gauge(
        "fleet_stage_sla_seconds",
        "How long a bet may wait at each stage that has an SLA (protocol overrides applied).",
        ["stage"],
        (([name], seconds) for name, seconds in snap.sla_s.items()),
    )
    yield _gauge(
        "fleet_stage_sla_breaches",
        "Bets past their stage's SLA (protocol overrides applied), per stage.",
        ["stage"],
        (([s.name], s.past_sla) for s in snap.stages if not s.terminal),
    )


def _ledger_metrics(snap: MetricsSnapshot) -> Iterator[Metric]:
    yield _counter(
        "fleet_transitions",
        "Accepted transitions by edge, agent and kind (from_stage is empty for a creation).",
        ["from_stage", "to_stage", "agent", "kind"],
        (
            ([e.source, e.dest, e.agent, e.kind], n)
            for e, n in sorted(snap.transitions.items(), key=_edge_key)
        ),
    )
    yield _counter(
        "fleet_refusals",
        "Transition attempts the enforcer refused, by agent and reason.",
        ["agent", "reason"],
        (([agent, reason], n) for (agent, reason), n in sorted(snap.refusals.items())),
    )
    yield _counter(
        "fleet_claim_takeovers", "Claims that took over an expired lease.", [], [([], snap.claim_takeovers)]
    )


def _edge_key(item: tuple[object, int]) -> str:
    return repr(item[0])


def _heartbeat_metrics(snap: MetricsSnapshot) -> Iterator[Metric]:
    beats = snap.heartbeats
    yield _counter(
        "fleet_heartbeats",
        "Heartbeats recorded, by agent and status (ok, skipped, refused, failed).",
        ["agent", "status"],
        (([agent, status], n) for (agent, status), n in sorted(beats.by_outcome.items())),
    )
    yield _duration_histogram(beats.durations_s)
    yield _gauge(
        "fleet_agent_last_heartbeat_timestamp_seconds",
        "Unix time the agent's latest heartbeat started (absent: it never ran).",
        ["agent"],
        (([agent], _unix(at)) for agent, at in sorted(beats.last_started.items())),
    )
    yield _gauge(
        "fleet_agent_heartbeat_interval_seconds",
        "Longest gap between two scheduled heartbeats of the agent (FLEET_DAY_SECONDS applied).",
        ["agent"],
        (([agent], seconds) for agent, seconds in sorted(snap.interval_s.items())),
    )
    yield _gauge(
        "fleet_queue_depth",
        "Messages waiting on each Celery queue.",
        ["queue"],
        (([queue], depth) for queue, depth in snap.queues.items()),
    )


def _duration_histogram(durations: list[float]) -> Metric:
    buckets = [(str(bound), float(sum(1 for d in durations if d <= bound))) for bound in DURATION_BUCKETS]
    family = HistogramMetricFamily("fleet_heartbeat_duration_seconds", "Duration of the recorded heartbeats.")
    family.add_metric([], [*buckets, ("+Inf", float(len(durations)))], sum_value=sum(durations))
    return family


def _board_metrics(snap: MetricsSnapshot) -> Iterator[Metric]:
    yield _gauge(
        "fleet_board_open_tasks",
        "Open board tasks by origin.",
        ["origin"],
        (([origin], n) for origin, n in sorted(snap.open_tasks.items())),
    )
    if snap.drift is not None:
        yield _gauge("fleet_drift_findings", "Drift findings of the CEO's audit now.", [], [([], snap.drift)])
    if snap.loops is not None:
        yield _gauge(
            "fleet_refusal_loop_findings",
            "Agents refused again and again for one move, now.",
            [],
            [([], snap.loops)],
        )
    if snap.stranded is not None:
        yield _gauge(
            "fleet_stranded_findings",
            "Stranded-bet findings of the CEO's audit now, by kind.",
            ["kind"],
            (([kind], n) for kind, n in sorted(snap.stranded.items())),
        )
    yield _gauge(
        "fleet_scrape_timestamp_seconds",
        "When this scrape read the shared state.",
        [],
        [([], _unix(snap.at))],
    )


def _unix(at: datetime) -> float:
    return at.timestamp()
