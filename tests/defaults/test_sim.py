"""The default fleet's simulated sweep handlers, run through real heartbeats in-process."""

from __future__ import annotations

from fleet.constants import REFUSALS, TRANSITIONS
from fleet.defaults.sim import SERVICES
from fleet.runtime.heartbeat import run_heartbeat


def traced_bets(record, action: str) -> set[str]:
    """Bet ids of the trace lines ``<action> bet=<id> ...`` (debug mode)."""
    return {
        word.removeprefix("bet=")
        for step in record.trace
        if step.startswith(f"{action} ")
        for word in step.split()
        if word.startswith("bet=")
    }


def test_agents_outside_the_pipeline_never_write_a_stage(runtime, bet_at) -> None:
    # Given bets all along the pipeline
    for i, stage in enumerate(["sourced", "demand_validated", "lp_approved", "lp_live", "ads_running"]):
        bet_at(f"bet{i}", stage)
    before = runtime.db[TRANSITIONS].count_documents({})
    # When every agent that owns no edge runs a heartbeat (the ops agents aside)
    outside = [s.name for s in runtime.registry if s.name not in runtime.registry.pipeline.owners()]
    records = [
        run_heartbeat(runtime, name) for name in outside if runtime.registry.require(name).group != "ops"
    ]
    # Then each ran fine, and not one transition was written or attempted
    assert len(records) == 33
    assert [r.agent for r in records if r.status != "ok"] == []
    assert runtime.db[TRANSITIONS].count_documents({}) == before
    assert runtime.db[REFUSALS].count_documents({}) == 0
    assert runtime.enforcer.verify() == []


def test_a_content_agent_drafts_about_live_bets_only_and_deterministically(runtime, bet_at) -> None:
    # Given ten live bets and one killed bet
    live = {bet_at(f"live{i}", "sourced").bet_id for i in range(10)}
    dead = bet_at("dead", "sourced")
    runtime.enforcer.advance("dead", "killed", "source_validation_gate", dead.seq, verdict="test")
    # When the blog writer runs twice
    first = run_heartbeat(runtime, "blog_writer", debug=True)
    second = run_heartbeat(runtime, "blog_writer", debug=True)
    # Then it drafted about some live bets, never the killed one, the same ones both times
    drafted = traced_bets(first, "drafted")
    assert 0 < first.actions["drafted"] == len(drafted) < len(live)
    assert drafted <= live
    assert traced_bets(second, "drafted") == drafted


def test_a_build_helper_works_on_the_build_groups_bets_only(runtime, bet_at) -> None:
    # Given bets at the build stages and bets elsewhere
    build = {bet_at(f"b{i}", "lp_approved").bet_id for i in range(4)}
    build |= {bet_at(f"c{i}", "lp_built").bet_id for i in range(4)}
    for i in range(4):
        bet_at(f"other{i}", "economics_checked")
        bet_at(f"late{i}", "ads_running")
    # When the copywriter (a build helper) runs
    record = run_heartbeat(runtime, "lp_copywriter", debug=True)
    # Then it only touched bets the build group's pipeline agents hold
    assisted = traced_bets(record, "assisted")
    assert assisted and assisted <= build
    assert record.actions["assisted"] == len(assisted)


def test_an_infrastructure_agent_checks_every_service_at_once(runtime) -> None:
    record = run_heartbeat(runtime, "uptime_monitor")
    assert record.status == "ok"
    assert record.actions["checked"] == len(SERVICES)
    assert "failed" not in record.actions


def test_failed_external_calls_are_retried_counted_and_do_not_fail_the_heartbeat(
    runtime, failing_calls
) -> None:
    # Given every external call failing
    # When an infrastructure agent checks its services
    record = run_heartbeat(runtime, "dns_ssl_checker")
    # Then each call had its three attempts, the failures are counted, and the heartbeat is ok
    assert record.status == "ok", record.error
    assert record.actions["failed"] == len(SERVICES)
    assert record.actions["retries"] == 2 * len(SERVICES)
    assert "checked" not in record.actions


def test_an_outreach_agent_works_its_requests_and_leaves_audit_tasks_alone(runtime) -> None:
    # Given four work requests and one drift task assigned to the lead finder
    board = runtime.board
    requests = [
        board.file(
            assignee="lead_finder",
            origin="manual",
            dedupe_key=f"leads:{i}",
            title=f"find 20 leads for segment {i}",
            by="operator",
        )[0]
        for i in range(4)
    ]
    drift, _ = board.file(
        assignee="lead_finder",
        origin="drift",
        dedupe_key="drift:lead_finder",
        title="update the spec",
        by="ceo",
    )
    # When its heartbeat runs, then runs again until no request is left (each run finishes some)
    first = run_heartbeat(runtime, "lead_finder")
    for _ in range(20):
        if not [t for t in board.open_for("lead_finder") if t.origin == "manual"]:
            break
        run_heartbeat(runtime, "lead_finder")
    # Then every request was worked on the first run and is done now, closed by the agent
    assert first.actions["done"] + first.actions["started"] == 4
    assert all(board.get(t.task_id).closed_reason == "done: outreach sent" for t in requests)
    assert all(board.history(t.task_id)[-1]["by"] == "lead_finder" for t in requests)
    # And the audit's task is untouched: only the CEO closes what its audit filed
    assert board.get(drift.task_id).is_open and board.get(drift.task_id).seq == 0


def test_a_scout_whose_feed_is_down_skips_its_ideas_and_keeps_the_heartbeat(runtime, failing_calls) -> None:
    record = run_heartbeat(runtime, "reddit_scout")
    assert record.status == "ok", record.error
    assert record.actions["failed"] == 2 and "created" not in record.actions
    assert runtime.enforcer.bets_at(["sourced"], 10) == []


def test_a_scout_writes_its_ideas_to_the_ledger(runtime) -> None:
    record = run_heartbeat(runtime, "forum_scout")
    assert record.status == "ok" and record.actions["created"] == 2
    bets = runtime.enforcer.bets_at(["sourced"], 10)
    assert [bet.created_by for bet in bets] == ["forum_scout"] * 2
