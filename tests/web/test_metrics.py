"""/metrics parses with the Prometheus client's own parser, and its numbers match the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from pymongo.database import Database
from starlette.testclient import TestClient

from fleet import queries as report
from fleet.constants import BETS, TRANSITIONS
from fleet.settings import Settings
from fleet.store import Document
from fleet.web.app import create_app

from .conftest import AUTH, Seeded


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


def waiting_since(db: Database[Document], bet_id: str, hours: float) -> None:
    """Make the bet look as if it arrived at its stage ``hours`` ago (its projection's time)."""
    db[BETS].update_one({"_id": bet_id}, {"$set": {"updated_at": datetime.now(UTC) - timedelta(hours=hours)}})


def test_sla_breaches_show_on_the_page_and_in_metrics(
    client: TestClient, seeded: Seeded, db: Database[Document]
) -> None:
    initial = seeded.registry.pipeline.stage_map[seeded.registry.pipeline.initial_stage]
    assert initial.sla_hours is not None
    waiting_since(db, seeded.bets[2].bet_id, initial.sla_hours + 1)
    metrics = scrape(client)
    assert by_label(metrics["fleet_stage_sla_breaches"], "stage")[initial.name] == 1
    assert by_label(metrics["fleet_stage_sla_seconds"], "stage")[initial.name] == initial.sla_hours * 3600
    assert (
        by_label(metrics["fleet_stage_oldest_bet_age_seconds"], "stage")[initial.name]
        > initial.sla_hours * 3600
    )
    row = client.get("/pipeline").text.split(f'<tr data-stage="{initial.name}"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num late">1</td>' in row


def test_a_protocols_sla_override_is_the_sla_shown(
    seeded: Seeded, db: Database[Document], redis: object, web_settings: Settings, tmp_path: Path
) -> None:
    initial = seeded.registry.pipeline.initial_stage
    text = (web_settings.protocols_dir / "fleet.yaml").read_text()
    (tmp_path / "fleet.yaml").write_text(
        text.replace("stage_sla_hours: {}", f"stage_sla_hours: {{{initial}: 100}}")
    )
    waiting_since(db, seeded.bets[2].bet_id, 50)
    settings = web_settings.model_copy(update={"protocols_dir": tmp_path})
    with TestClient(create_app(settings), headers=AUTH) as custom:
        metrics = scrape(custom)
    assert by_label(metrics["fleet_stage_sla_seconds"], "stage")[initial] == 100 * 3600
    assert by_label(metrics["fleet_stage_sla_breaches"], "stage")[initial] == 0
