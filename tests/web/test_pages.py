"""Every page renders the figures the read-side queries give, for the real app over real services."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, datetime

from pymongo.database import Database
from starlette.testclient import TestClient

from fleet import queries as report
from fleet.definitions.catalogue import load_registry
from fleet.store import Document
from fleet.web.app import create_app

from ..runtime.conftest import TEST_FLEET_ENV
from .conftest import AUTH, Seeded


def stage_count(html: str, stage: str) -> int:
    row = re.search(rf'<tr data-stage="{stage}"[^>]*>.*?<td class="num count">(\d+)</td>', html, re.S)
    assert row, f"no row for {stage}"
    return int(row.group(1))


def test_pipeline_page_shows_every_stage_in_order_with_the_report_counts(
    client: TestClient, seeded: Seeded, db: Database[Document]
) -> None:
    page = client.get("/pipeline")
    assert page.status_code == 200
    html = page.text
    pipeline = seeded.registry.pipeline
    positions = [html.index(f'<tr data-stage="{s.name}"') for s in pipeline.stages]
    assert positions == sorted(positions)
    for row in report.bets_per_stage(db, pipeline):
        assert stage_count(html, row.stage) == row.count
    assert stage_count(html, pipeline.initial_stage) == 3
    assert stage_count(html, seeded.moved.stage) == 1
    assert '<span id="total-bets">4</span>' in html
    # flow in the last hour: 4 created + 1 moved; the graph names every stage and edge owner
    assert '<span id="transitions-hour">5</span>' in html
    assert html.count('<g class="node"') == len(pipeline.stages)
    assert html.count('<g class="edge') == len(pipeline.transitions)
    for edge in pipeline.transitions:
        assert f">{edge.owner}</text>" in html
    # the rogue creator's refused move of the last hour, as `fleet status` counts it
    moves = html.split('<table id="refused-moves">', 1)[1].split("</table>", 1)[0]
    assert f"<td>{pipeline.creators[0]}</td>" in moves


def test_live_fragment_is_the_refreshing_part_only(client: TestClient, seeded: Seeded) -> None:
    fragment = client.get("/pipeline/live")
    assert fragment.status_code == 200
    assert fragment.text.startswith('<div id="live" hx-get="/pipeline/live"')
    assert "<nav>" not in fragment.text


def test_bet_page_shows_timeline_claims_failures_and_refusals(client: TestClient, seeded: Seeded) -> None:
    moved = seeded.moved
    html = client.get(f"/bets/{moved.bet_id}").text
    assert f'<span id="bet-stage">{moved.stage}</span>' in html
    assert "score=0.9" in html and "pass" in html
    assert "Claims: 0" in html and "Failures: 0" in html
    refused = client.get(f"/bets/{seeded.bets[1].bet_id}").text
    assert "Refused attempts: 1" in refused and "rogue" not in refused.split("Refused attempts")[0]


def test_bets_list_links_each_bet(client: TestClient, seeded: Seeded) -> None:
    stage = seeded.registry.pipeline.initial_stage
    html = client.get(f"/bets?stage={stage}").text
    assert "3 of 3" in html
    for bet in seeded.bets[1:]:
        assert f'href="/bets/{bet.bet_id}"' in html


def test_agents_page_lists_every_agent_with_lock_and_failures(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/agents").text
    for name in seeded.registry.names():
        assert f'<tr data-agent="{name}">' in html
    assert html.count(">free</td>") == len(seeded.registry)


def test_board_page_lists_open_tasks_with_origin(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/board").text
    assert f'<tr data-task="{seeded.task_id}">' in html
    assert "stranded" in html and "look at this" in html


def test_schedule_page_compares_computed_and_observed_peaks(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/schedule").text
    computed = report.schedule_report(seeded.registry)
    assert f'<b id="computed-peak">{computed.peak_running}</b>' in html
    assert '<b id="observed-peak">0</b>' in html
    assert html.count('<rect class="computed"') == 24


def test_a_custom_pipeline_draws_its_own_stages(
    db: Database[Document], redis: object, web_settings: object
) -> None:
    registry = load_registry(TEST_FLEET_ENV["FLEET_CATALOGUE"], TEST_FLEET_ENV["FLEET_PIPELINE"])
    with TestClient(create_app(web_settings, registry), headers=AUTH) as custom:  # type: ignore[arg-type]
        html = custom.get("/pipeline").text
    names = [s.name for s in registry.pipeline.stages]
    assert re.findall(r'<g class="node" data-stage="([a-z_]+)"', html) == names
    edges = re.findall(r'<g class="edge edge-\w+" data-from="(\w+)" data-to="(\w+)"', html)
    assert edges == [t.edge for t in registry.pipeline.transitions]
    assert ">checker</text>" in html and ">finisher</text>" in html
    assert "sourced" not in html  # nothing of the default pipeline


def test_pages_read_the_time_as_utc(client: TestClient, seeded: Seeded) -> None:
    assert datetime.now(UTC).strftime("%Y-%m-%d") in client.get("/pipeline").text


def test_pipeline_page_shows_calls_with_a_bad_token_by_claimed_name_and_source(
    client: TestClient, seeded: Seeded, db: Database[Document]
) -> None:
    from fleet.errors import TokenRejected
    from fleet.mcp.rejections import Rejections

    rejections = Rejections(db, per_minute=10)
    for _ in range(3):
        rejections.record(TokenRejected("bad signature", "source_validation_gate"), "203.0.113.9", {})
    table = client.get("/pipeline").text.split('<table id="rejected-tokens">', 1)[1].split("</table>", 1)[0]
    assert '<td>source_validation_gate</td><td>203.0.113.9</td><td class="num">3</td>' in table


def test_schedule_legend_says_what_the_bars_plot(client: TestClient, seeded: Seeded) -> None:
    html = client.get("/schedule").text
    meaning = re.search(r'<span id="chart-meaning">([^<]+)</span>', html)
    label = re.search(r'class="hours-chart"[^>]* aria-label="([^"]+)"', html)
    assert meaning and label
    legend, drawn = html_lib.unescape(meaning.group(1)), html_lib.unescape(label.group(1))
    assert legend == drawn and "running at once" in legend and "started" not in legend
