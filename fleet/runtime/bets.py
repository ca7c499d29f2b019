"""One bet of a polling heartbeat: run the handler, commit its decision, hold a looping bet back.

Whichever batch runner claimed the bet (in-process threads or a fanned-out task), the
bet goes through :func:`process_bet`: read afresh, its expected cost reserved against the
agent's daily cap (:mod:`fleet.agents.budget`; a bet that does not fit is left untouched,
``over_budget``), decided by the handler, committed
through the enforcer (which wakes the next owner), deferred, or failed, never raising but
for an unreachable store or broker.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta
from typing import Any

from fleet.agents import budget, external, usage
from fleet.agents.context import BetContext, Decision, HeartbeatContext
from fleet.definitions.catalogue import spec_fingerprint
from fleet.definitions.pipeline import Kind
from fleet.errors import (
    CorruptBet,
    ExternalAgentFailed,
    ExternalCallFailed,
    FleetError,
    HeartbeatStopped,
    LedgerUnavailable,
    OverBudget,
    ServiceUnavailable,
    StaleBet,
    TransitionRefused,
)
from fleet.ledger import Bet
from fleet.ledger.claims import record_failure
from fleet.ledger.holds import Hold, Holds
from fleet.runtime import wake
from fleet.runtime.runtime import Runtime

#: A polling heartbeat reads this many candidates per claimable slot (some are claimed by others).
CANDIDATE_FACTOR = 3

#: Outcome (and counter) of a move by edge kind; kill and park moves are named by the stage they
#: reach instead, so counters speak the pipeline's words (``rejected=2``, ``on_hold=1``).
OUTCOME_BY_KIND = {Kind.ADVANCE: "advanced", Kind.REVIVE: "revived"}

Outcome = dict[str, Any]
Handler = Any  # a callable taking a BetContext and returning a Decision


def candidates(runtime: Runtime, ctx: HeartbeatContext) -> list[Bet | CorruptBet]:
    """The bets waiting at the agent's stages, least recently attempted first, holds left out."""
    held = held_here(runtime, ctx)
    limit = ctx.spec.batch_size * CANDIDATE_FACTOR + len(held)  # held bets never crowd the others out
    found = [
        bet
        for bet in runtime.enforcer.bets_at(list(ctx.spec.polls), limit)
        if isinstance(bet, CorruptBet) or (bet.bet_id, bet.seq) not in held
    ]
    if held:
        ctx.count("held", len(held))
    return found


def process_bet(runtime: Runtime, ctx: HeartbeatContext, handler: Handler, claimed: Bet) -> Outcome:
    """Run the handler on one bet and commit its decision; never raises but for infra errors."""
    outcome: Outcome = {"bet_id": claimed.bet_id, "seq": claimed.seq}
    try:
        bet = runtime.enforcer.get(claimed.bet_id)  # fresh and repaired, not the listing's copy
        if bet.seq != claimed.seq or bet.stage not in ctx.spec.polls:
            return {**outcome, "outcome": "skipped", "error": "moved by someone else"}
        try:
            reservation = _reserve(runtime, ctx, bet)
        except OverBudget as exc:  # not started, not touched: it waits for tomorrow's budget
            return {**outcome, **_over_budget(ctx, str(exc))}
        try:
            decision = handler(BetContext(ctx, bet))
        finally:
            outcome.update(settle(runtime, ctx, reservation, bet.bet_id))
        return {**outcome, **_commit(runtime, ctx, bet, decision), **external.report_of(decision)}
    except ServiceUnavailable:
        raise
    except ExternalCallFailed as exc:
        return {**outcome, **_failed(runtime, ctx, claimed, str(exc))}
    except ExternalAgentFailed as exc:  # the program's exit code and output tails stay on the entry
        return {**outcome, **exc.report, **_failed(runtime, ctx, claimed, str(exc))}
    except HeartbeatStopped as exc:  # not the bet's fault: no failure is counted on it
        ctx.log("abandoned", bet=claimed.bet_id, reason=exc.reason)
        return {**outcome, "outcome": "abandoned", "error": str(exc)}
    except TransitionRefused as exc:
        ctx.log("refused", bet=claimed.bet_id, reason=exc.reason)
        if isinstance(exc, StaleBet):  # lost a race: the bet moved, nothing to learn
            return {**outcome, "outcome": "refused", "error": str(exc)}
        runtime.enforcer.ledger.touch(claimed)  # to the back of the queue, like a bet that stays
        return {
            **outcome,
            "outcome": "refused",
            "error": str(exc),
            **_hold_if_looping(runtime, ctx, claimed, exc),
        }
    except Exception as exc:  # one bet's bug never aborts the others
        return {**outcome, **_failed(runtime, ctx, claimed, f"{type(exc).__name__}: {exc}")}


def _reserve(runtime: Runtime, ctx: HeartbeatContext, bet: Bet) -> budget.Reservation | None:
    member = f"{ctx.heartbeat_id}:{bet.bet_id}:{bet.seq}"
    return budget.reserve(runtime.redis, runtime.db, ctx.protocols, ctx.agent, member, ctx.spec.time_limit)


def settle(
    runtime: Runtime, ctx: HeartbeatContext, reservation: budget.Reservation | None, bet_id: str | None
) -> Outcome:
    """Release a run's reservation; what it reported against what was expected (for the record)."""
    if reservation is None:
        return {}
    reservation.release()
    try:
        cost = usage.cost_of(runtime.db, ctx.agent, ctx.heartbeat_id, bet_id)
    except LedgerUnavailable:
        return {}  # the reports (if any) are stored or lost already; only this figure is missing
    expected = reservation.estimate_usd
    if expected is not None and cost > expected + 1e-9:
        ctx.count("over_estimate")
        ctx.log("over-estimate", bet=bet_id, cost_usd=round(cost, 6), estimate_usd=expected)
    return {"cost_usd": round(cost, 6), "reserved_usd": round(reservation.amount_usd, 6)}


def _over_budget(ctx: HeartbeatContext, reason: str) -> Outcome:
    ctx.log("over-budget", reason=reason)
    with suppress(FleetError):  # best effort: the deferral itself is on the record
        usage.file_budget_task(ctx.board, ctx.agent, ctx.spec.owner, reason, ctx.now)
    return {"outcome": "over_budget", "error": reason}


def held_here(runtime: Runtime, ctx: HeartbeatContext) -> set[tuple[str, int]]:
    """(bet, seq) pairs this agent is not offered: holds taken under its current spec and protocols."""
    fingerprint = spec_fingerprint(ctx.spec)
    return {
        (hold.bet_id, hold.seq)
        for hold in Holds(runtime.db).of_agent(ctx.agent)
        if hold.applies(fingerprint, ctx.protocols.hash)
    }


def _hold_if_looping(
    runtime: Runtime, ctx: HeartbeatContext, bet: Bet, refused: TransitionRefused
) -> Outcome:
    """Hold the bet back from this agent once it was refused on it too often (a refusal loop)."""
    policy = ctx.protocols.protocols.escalation
    holds = Holds(runtime.db)
    since = ctx.now - timedelta(hours=policy.refusal_loop_window_h)
    refusals = holds.recent_refusals(ctx.agent, bet.bet_id, bet.seq, since)
    if refusals <= policy.refusal_loop_threshold:
        return {}
    hold = Hold(
        agent=ctx.agent,
        bet_id=bet.bet_id,
        seq=bet.seq,
        from_stage=refused.from_stage,
        to_stage=refused.to_stage,
        refusals=refusals,
        reason=refused.reason,
        fingerprint=spec_fingerprint(ctx.spec),
        protocol_hash=ctx.protocols.hash,
        at=ctx.now,
    )
    if holds.take(hold):
        ctx.count("held_now")
        ctx.log("held", bet=bet.bet_id, refusals=refusals, move=f"{refused.from_stage}->{refused.to_stage}")
    return {"held": True}


def _commit(runtime: Runtime, ctx: HeartbeatContext, bet: Bet, decision: Any) -> Outcome:
    if not isinstance(decision, Decision):
        raise TypeError(f"handler returned {type(decision).__name__}, expected Decision")
    if outside := external.moved_outside(decision):
        return outside  # an external agent moved the bet itself, through the MCP tools
    if decision.to_stage is None:
        runtime.enforcer.ledger.touch(bet)  # to the back of the stage's queue: newer bets get a turn
        ctx.log("deferred", bet=bet.bet_id, verdict=decision.verdict)
        return {"outcome": "deferred", "verdict": decision.verdict}
    moved = runtime.enforcer.advance(
        bet.bet_id,
        decision.to_stage,
        ctx.agent,
        bet.seq,
        verdict=decision.verdict,
        evidence=decision.evidence,
        heartbeat_id=ctx.heartbeat_id,
        stamp=ctx.protocols.stamp,
        view=bet,
    )
    wake.on_arrival(runtime, moved.stage)  # the next owner runs now, not at its next slot
    edge = runtime.registry.pipeline.edge(bet.stage, moved.stage)
    kind = move_outcome(edge.kind if edge else Kind.ADVANCE, moved.stage)
    ctx.log(kind, bet=bet.bet_id, to=moved.stage, verdict=decision.verdict)
    return {"outcome": kind, "to_stage": moved.stage, "verdict": decision.verdict}


def move_outcome(kind: Kind, to_stage: str) -> str:
    """What a heartbeat counts for a move: ``advanced``/``revived``, else the stage it reached."""
    return OUTCOME_BY_KIND.get(kind, to_stage)


def _failed(runtime: Runtime, ctx: HeartbeatContext, bet: Bet, error: str) -> Outcome:
    """Leave the bet where it is and count a failure on it: a failed call is not a failed task."""
    record_failure(runtime.db, bet.bet_id, bet.seq, ctx.agent, ctx.heartbeat_id, error)
    runtime.enforcer.ledger.touch(bet)
    ctx.log("failed", bet=bet.bet_id, error=error)
    return {"outcome": "failed", "error": error}
