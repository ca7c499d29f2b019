"""Simulated handlers for the default fleet: no network, deterministic verdicts.

Each lookup sleeps for ``FLEET_SIM_LATENCY_S`` and fails with probability
``FLEET_SIM_FAILURE_RATE`` (a transient error, so the retry policy runs).
Verdicts are seeded by bet, agent and sequence number: the same bet gets the same
verdict from the same gate on every run. Replace any of these by a real handler
by pointing the agent spec's ``handler`` at your function (see README).

Polling handlers (:func:`gate`) decide bet by bet; the others are sweep handlers
that take the whole :class:`HeartbeatContext`: :func:`scout` creates bets, and
:func:`assist`, :func:`draft`, :func:`check` and :func:`outreach` work on live bets,
external services or board tasks. Sweep handlers never move a stage; a lookup that
fails every attempt is counted (``failed``) and the sweep goes on.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Sequence
from functools import partial
from typing import Any

from fleet.agents.context import BetContext, Decision, HeartbeatContext
from fleet.board import Origin, Task, TaskStatus
from fleet.errors import ExternalCallFailed, TaskClosed
from fleet.ledger import Bet
from fleet.settings import get_settings

#: Chance that a bet passes a polling agent's check, by the kind of edge it takes.
PASS_RATE = 0.75
#: Chance that a bet which did not pass is parked rather than killed (where parking exists).
PARK_RATE = 0.3
#: Lookups a simulated gate runs in parallel per bet.
LOOKUPS = ("bet_record", "web_search", "keyword_data", "activity_log")
#: Ideas a scout writes per heartbeat.
IDEAS_PER_SCOUT = 2
#: Share of the live bets a build or ads helper works on in one heartbeat.
ASSIST_RATE = 0.5
#: Share of the live bets a content agent drafts a piece about in one heartbeat.
DRAFT_RATE = 0.4
#: Share of the live bets an outreach agent prospects for in one heartbeat.
PROSPECT_RATE = 0.3
#: Chance that an outreach agent finishes a work request in one heartbeat.
DONE_RATE = 0.5
#: External services an infrastructure agent checks (the seed's list).
SERVICES = ("google_ads_api", "apollo", "vercel", "github", "resend")
#: A simulated health score below this marks the service degraded for that agent.
DEGRADED_BELOW = 0.1


def _rng(*parts: object) -> random.Random:
    return random.Random(zlib.crc32(":".join(map(str, parts)).encode()))


def lookup(source: str, bet_id: str) -> dict[str, Any]:
    """One simulated external lookup: latency, and sometimes a transient failure."""
    settings = get_settings()
    time.sleep(settings.sim_latency_s)
    if random.random() < settings.sim_failure_rate:
        raise ExternalCallFailed(f"{source}: simulated outage")
    return {"source": source, "bet": bet_id, "score": _rng(source, bet_id).random()}


def gate(ctx: BetContext) -> Decision:
    """A polling agent: run the lookups in parallel, then pass, park or kill the bet."""
    bet = ctx.bet
    results = ctx.gather(*(lambda s=s: ctx.call(lookup, s, bet.bet_id) for s in LOOKUPS))
    options = ctx.options()
    pipeline_edges = {t.dest: t.kind for t in ctx.heartbeat.registry.pipeline.edges_from(bet.stage)}
    by_kind = {str(pipeline_edges[dest]): dest for dest in options}
    rng = _rng(bet.bet_id, ctx.agent, bet.seq)
    evidence = {
        "lookups": len(results),
        "score": round(sum(r["score"] for r in results) / len(results), 3),
    }
    passed = rng.random() < PASS_RATE
    target = _choose(by_kind, passed, rng.random() < PARK_RATE)
    if target is None:
        return Decision.stay("no edge for this verdict", **evidence)
    return Decision.move(target, "pass" if passed else "fail", **evidence)


def _choose(by_kind: dict[str, str], passed: bool, park: bool) -> str | None:
    if passed:
        return by_kind.get("advance") or by_kind.get("revive")
    if park and "park" in by_kind:
        return by_kind["park"]
    return by_kind.get("kill")


def scout(ctx: HeartbeatContext) -> None:
    """A sourcing agent: write a few raw ideas to the ledger.

    Ideas are seeded by the heartbeat and keyed by their number, so a retried or
    redelivered heartbeat writes the same ideas under the same bet ids (found, not doubled).
    """
    rng = _rng(ctx.heartbeat_id, ctx.agent)
    for number in range(IDEAS_PER_SCOUT):
        idea = f"{ctx.agent.replace('_', ' ')} idea #{rng.randrange(10**6)}"
        signal = _try_lookup(ctx, "source_feed", idea)
        if signal is None:  # the feed is down: skip this idea, keep the heartbeat
            ctx.count("failed")
            continue
        fields = {"idea": idea, "signal": round(signal["score"], 3), "source": ctx.agent}
        ctx.create_bet(fields, key=f"idea-{number}")


# --- sweep handlers: live bets, services and board tasks; they never move a stage ----


def assist(ctx: HeartbeatContext) -> None:
    """A build or ads helper: work on some of the bets its group's pipeline agents hold."""
    _work_on_bets(ctx, "workspace", "assisted", ASSIST_RATE)


def draft(ctx: HeartbeatContext) -> None:
    """A content agent: draft a piece about some of the live bets."""
    _work_on_bets(ctx, "content_brief", "drafted", DRAFT_RATE)


def check(ctx: HeartbeatContext) -> None:
    """An infrastructure agent: check every external service at once; flag degraded ones."""
    results = _lookups(ctx, [(service, ctx.agent) for service in SERVICES])
    for service, result in zip(SERVICES, results, strict=True):
        if result is None:
            continue
        ctx.count("checked")
        if _rng(service, ctx.agent).random() < DEGRADED_BELOW:
            ctx.count("degraded")
            ctx.log("degraded", service=service)


def outreach(ctx: HeartbeatContext) -> None:
    """An outreach agent: work its open work requests on the board, then prospect for live bets."""
    requests = [task for task in ctx.tasks if task.origin is Origin.MANUAL]
    results = _lookups(ctx, [("apollo", task.task_id) for task in requests])
    for task, result in zip(requests, results, strict=True):
        if result is not None:
            _work_on_task(ctx, task)
    _work_on_bets(ctx, "apollo", "prospected", PROSPECT_RATE)


def live_stages(ctx: HeartbeatContext) -> list[str]:
    """Stages the agent's group works on: those its pipeline agents poll, else every live stage."""
    group = {stage for spec in ctx.registry if spec.group == ctx.spec.group for stage in spec.polls}
    pipeline = ctx.registry.pipeline
    return sorted(group) or [stage.name for stage in pipeline.stages if not stage.terminal]


def live_bets(ctx: HeartbeatContext) -> list[Bet]:
    """Up to ``batch_size`` bets at :func:`live_stages`, read from the ledger (corrupt ones skipped)."""
    found = ctx.enforcer.bets_at(live_stages(ctx), ctx.spec.batch_size)
    return [bet for bet in found if isinstance(bet, Bet)]


def _work_on_bets(ctx: HeartbeatContext, source: str, action: str, rate: float) -> None:
    """Pick some live bets (seeded by agent, bet and seq), look them all up at once, count ``action``."""
    bets = [bet for bet in live_bets(ctx) if _rng(ctx.agent, bet.bet_id, bet.seq).random() < rate]
    results = _lookups(ctx, [(source, bet.bet_id) for bet in bets])
    for bet, result in zip(bets, results, strict=True):
        if result is not None:
            ctx.count(action)
            ctx.log(action, bet=bet.bet_id, stage=bet.stage)


def _work_on_task(ctx: HeartbeatContext, task: Task) -> None:
    """Finish the task (seeded by agent, task and its seq) or mark it started."""
    try:
        if _rng(ctx.agent, task.task_id, task.seq).random() < DONE_RATE:
            ctx.board.close(task.task_id, by=ctx.agent, reason="done: outreach sent")
            ctx.count("done")
        elif task.status is TaskStatus.OPEN:
            ctx.board.set_status(task.task_id, TaskStatus.IN_PROGRESS, by=ctx.agent, note="working")
            ctx.count("started")
    except TaskClosed:
        ctx.log("closed-elsewhere", task=task.task_id)


def _lookups(ctx: HeartbeatContext, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any] | None]:
    """Every ``lookup(source, key)`` at once; None where all attempts failed (counted as ``failed``)."""
    results = ctx.gather(*(partial(_try_lookup, ctx, source, key) for source, key in pairs))
    failed = sum(result is None for result in results)
    if failed:
        ctx.count("failed", failed)
    return results


def _try_lookup(ctx: HeartbeatContext, source: str, key: str) -> dict[str, Any] | None:
    """One lookup through the retry policy: a failed call is not a failed task."""
    try:
        return ctx.call(lookup, source, key)
    except ExternalCallFailed:
        return None
