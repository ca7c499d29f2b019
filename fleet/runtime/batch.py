"""The in-process batch runner: claim a batch of bets, run them on the bet threads, release.

The other runner, :func:`fleet.runtime.fanout.dispatch`, sends each bet as its own task;
a fanned-out bet task comes back here with a batch of one (its bet), so both paths claim,
renew, stop and record a bet the same way. The soft time limit lands in the main thread
while it waits for the bet threads: it stops them at their next call, waits for them, and
only then releases the claims.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import AbstractContextManager, suppress
from datetime import timedelta
from functools import partial
from typing import Any

from fleet.agents.context import HeartbeatContext
from fleet.errors import CorruptBet, LedgerUnavailable
from fleet.ledger import Bet
from fleet.ledger.claims import Claims
from fleet.runtime import handoff
from fleet.runtime.bets import Handler, Outcome, process_bet
from fleet.runtime.renewer import renewing
from fleet.runtime.run import Run

#: Share of the agent's time limit after which no new bet is started.
SOFT_DEADLINE_SHARE = 0.8

#: A batch runner: takes a run (its context and handler set) and the candidates found for it.
BatchRunner = Callable[[Run, list[Bet | CorruptBet]], None]


def in_process(run: Run, bets: list[Bet | CorruptBet], renew_also: Callable[[], None] | None = None) -> None:
    """Claim up to ``batch_size`` of ``bets`` and process them on this process's bet threads."""
    runtime, ctx, record = run.runtime, run.ctx, run.record
    ttl = timedelta(seconds=ctx.protocols.protocols.escalation.claim_ttl_s)
    claims = Claims(runtime.db, ctx.agent, record.heartbeat_id, ttl)
    deadline = time.monotonic() + ctx.spec.time_limit * SOFT_DEADLINE_SHARE
    futures: list[Future[Outcome]] = []
    pickups: dict[str, dict[str, Any]] = {}
    try:
        with _renewing(claims, ttl, renew_also):
            try:
                for bet in _claim_batch(run, claims, bets):
                    if not run.is_part:  # a part's pickup is on its heartbeat's record (dispatch)
                        pickups.update(handoff.picked_up([bet], ctx.now))
                    task = partial(_process_in_time, run, _handler(run), bet, deadline)
                    futures.append(runtime.bet_pool.submit(task))
                wait(futures)
            except BaseException:  # the soft time limit lands in this (main) thread
                ctx.stop.set("interrupted")
                wait(futures)  # bet threads stop at their next call: none outlives its claim
                raise
            finally:
                try:
                    _collect(futures, ctx, record.bets)
                finally:
                    handoff.annotate(record.bets, pickups)
    finally:
        # Only once the renewer and every bet thread have stopped: on FerretDB a renewal racing
        # a release writes the whole claim back and can undo ``released_at`` (a phantom lease).
        _release_claims(claims, ctx)


def _handler(run: Run) -> Handler:
    if run.handler is None:
        raise RuntimeError("the handler step has not run")  # a step order bug, never input
    return run.handler


def _claim_batch(run: Run, claims: Claims, bets: list[Bet | CorruptBet]) -> Iterator[Bet]:
    """Yield up to ``batch_size`` bets this run managed to claim; flag corrupt ones."""
    ctx, taken = run.ctx, 0
    for bet in bets:
        if isinstance(bet, CorruptBet):
            ctx.count("corrupt")
            run.record.bets.append({"bet_id": bet.bet_id, "outcome": "corrupt", "error": bet.problem})
            ctx.log("corrupt", bet=bet.bet_id, problem=bet.problem)
            continue
        if taken >= ctx.spec.batch_size:
            return
        if claims.try_claim(bet.bet_id, bet.seq):
            taken += 1
            if not run.is_part:  # a part's one bet was counted as dispatched by its heartbeat
                ctx.count("claimed")
            yield bet
        elif run.is_part:  # its in-flight mark lapsed while queued and someone took the bet
            ctx.count("skipped")
            run.record.bets.append(
                {"bet_id": bet.bet_id, "seq": bet.seq, "outcome": "skipped", "error": "claimed elsewhere"}
            )
        else:
            ctx.log("claimed-elsewhere", bet=bet.bet_id)


def _process_in_time(run: Run, handler: Handler, bet: Bet, deadline: float) -> Outcome:
    ctx = run.ctx
    if ctx.stop.is_set() or time.monotonic() > deadline:
        ctx.log("deadline", bet=bet.bet_id, stopping=ctx.stop.reason)
        why = f"stopping: {ctx.stop.reason}" if ctx.stop.is_set() else "time limit near"
        return {"bet_id": bet.bet_id, "seq": bet.seq, "outcome": "skipped", "error": why}
    return process_bet(run.runtime, ctx, handler, bet)


def _collect(futures: list[Future[Outcome]], ctx: HeartbeatContext, entries: list[Outcome]) -> None:
    """Put every finished bet's outcome on the record; then re-raise an infrastructure error."""
    unavailable: BaseException | None = None
    for future in futures:
        if not future.done():
            continue
        if (exc := future.exception()) is not None:
            unavailable = unavailable or exc
            continue
        outcome = future.result()
        entries.append(outcome)
        ctx.count(outcome["outcome"])
    if unavailable is not None:
        raise unavailable  # the store or broker is down: Celery retries the heartbeat


def _release_claims(claims: Claims, ctx: HeartbeatContext) -> None:
    """Release every lease; with the store down they expire on their own, and the error that
    brought us here (not this one) is what the heartbeat reports."""
    try:
        claims.release_all()
    except LedgerUnavailable:
        ctx.log("claims-unreleased", held=len(claims.held))


def _renewing(
    claims: Claims, ttl: timedelta, renew_also: Callable[[], None] | None
) -> AbstractContextManager[None]:
    """Renew the run's leases (and ``renew_also``: a part's in-flight mark) every third of their TTL."""

    def renew() -> None:
        if renew_also is not None:
            renew_also()
        with suppress(LedgerUnavailable):  # a missed renewal risks duplicate work, not a wrong stage
            claims.renew()

    if renew_also is not None:
        renew_also()  # the mark set at dispatch covered the queue wait; the lease was just taken
    return renewing(ttl.total_seconds() / 3, renew, f"claims of {claims.heartbeat_id}")
