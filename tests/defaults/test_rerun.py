"""Every agent of the default fleet, run twice under the same heartbeat id, does its work once.

A Celery retry or redelivery reuses the task id; the second run must find its own work
done: no extra bet, transition, refusal, failure, board task or task event.
"""

from __future__ import annotations

from fleet.constants import BETS, FAILURES, HEARTBEATS, REFUSALS, TASK_EVENTS, TASKS, TRANSITIONS
from fleet.runtime.heartbeat import run_heartbeat

COUNTED = (BETS, TRANSITIONS, REFUSALS, FAILURES, TASKS, TASK_EVENTS)


def counts(db) -> dict[str, int]:
    return {name: db[name].count_documents({}) for name in COUNTED}


def test_every_agent_run_twice_under_one_id_changes_nothing_the_second_time(runtime, bet_at) -> None:
    # Given bets all along the pipeline and a board with a work request
    for n, stage in enumerate(["sourced", "sourced", "economics_checked", "offer_validated", "lp_live"]):
        bet_at(f"bet{n}", stage)
    bet_at("bet-ads", "ads_running")
    outreach = next(spec.name for spec in runtime.registry if spec.group == "outreach")
    runtime.board.file(assignee=outreach, origin="manual", dedupe_key="req", title="call them", by="operator")
    differing = {}
    # (creators last, so that every poller's candidates fit in one batch: a second batch is new work)
    for spec in sorted(runtime.registry, key=lambda spec: spec.creates):
        # When an agent's heartbeat runs, dies before its record, and runs again under its id
        first = run_heartbeat(runtime, spec.name, heartbeat_id=f"hb-{spec.name}")
        assert first.status == "ok", (spec.name, first.error)
        after_first = counts(runtime.db)
        runtime.db[HEARTBEATS].delete_one({"_id": f"hb-{spec.name}"})
        again = run_heartbeat(runtime, spec.name, heartbeat_id=f"hb-{spec.name}")
        assert again.status == "ok", (spec.name, again.error)
        # Then the second run added nothing
        if counts(runtime.db) != after_first:
            differing[spec.name] = (after_first, counts(runtime.db))
    assert differing == {}, repr(differing)
    assert runtime.db[BETS].count_documents({}) > 6  # the scouts did create bets, once
    assert runtime.enforcer.verify() == []
