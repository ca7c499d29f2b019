"""/metrics parses with the Prometheus client's own parser, and its numbers match the ledger."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pymongo.database import Database
from starlette.testclient import TestClient

from fleet import report
from fleet.constants import TRANSITIONS
from fleet.store import Document

from .conftest import Seeded


def scrape(client: TestClient) -> dict[str, list[Sample]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def by_label(samples: list[Sample], label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in samples}


def test_metrics_match_the_ledger(client: TestClient, seeded: Seeded, db: Database[Document]) -> None:
    metrics = scrape(client)
    pipeline = seeded.registry.pipeline
    expected = {row.stage: float(row.count) for row in report.bets_per_stage(db, pipeline)}
    assert by_label(metrics["fleet_bets"], "stage") == expected
    transitions = [s for s in metrics["fleet_transitions"] if s.name == "fleet_transitions_total"]
    assert sum(s.value for s in transitions) == db[TRANSITIONS].count_documents({})
    edge = pipeline.edges_from(pipeline.initial_stage)[0]
    moved = [
        s for s in transitions if s.labels["from_stage"] == edge.source and s.labels["to_stage"] == edge.dest
    ]
    assert [(s.labels["agent"], s.labels["kind"], s.value) for s in moved] == [
        (edge.owner, str(edge.kind), 1.0)
    ]
    refusals = [s for s in metrics["fleet_refusals"] if s.name == "fleet_refusals_total"]
    assert [(s.labels["agent"], s.value) for s in refusals] == [(pipeline.creators[0], 1.0)]
    assert by_label(metrics["fleet_board_open_tasks"], "origin") == {"stranded": 1.0}
    ages = by_label(metrics["fleet_stage_oldest_bet_age_seconds"], "stage")
    assert ages[pipeline.initial_stage] > 0 and ages["killed"] == 0
    assert set(by_label(metrics["fleet_agent_heartbeat_interval_seconds"], "agent")) == set(
        seeded.registry.names()
    )


def test_heartbeat_metrics_come_from_the_heartbeat_records(
    client: TestClient, seeded: Seeded, db: Database[Document]
) -> None:
    from tests.cli.test_report import heartbeat

    db["heartbeats"].insert_many(
        [
            heartbeat("a", "alpha", 0, 0.01),
            heartbeat("b", "alpha", 1, 3, status="failed"),
            heartbeat("c", "beta", 2, 2.5),
        ]
    )
    metrics = scrape(client)
    beats = {
        (s.labels["agent"], s.labels["status"]): s.value
        for s in metrics["fleet_heartbeats"]
        if s.name == "fleet_heartbeats_total"
    }
    assert beats == {("alpha", "ok"): 1.0, ("alpha", "failed"): 1.0, ("beta", "ok"): 1.0}
    histogram = {s.name: s for s in metrics["fleet_heartbeat_duration_seconds"] if "le" not in s.labels}
    assert histogram["fleet_heartbeat_duration_seconds_count"].value == 3
    assert histogram["fleet_heartbeat_duration_seconds_sum"].value == 0.6 + 120 + 30
    last = by_label(metrics["fleet_agent_last_heartbeat_timestamp_seconds"], "agent")
    assert set(last) == {"alpha", "beta"}
