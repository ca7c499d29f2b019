"""The ops agents' handlers: the CEO's audit and the watchdog's ledger repair.

These are real handlers, not simulations. The CEO runs the drift audit (agent
specs against the shared protocols) and stranded-bet detection every heartbeat
and turns what it finds into board tasks; tasks whose condition is gone close
themselves. The watchdog rolls lagging bet projections forward and prunes what the
retention window lets go (:mod:`fleet.ops.retention`).
"""

from __future__ import annotations

from datetime import timedelta

from fleet import audit
from fleet.agents.context import HeartbeatContext
from fleet.board import Origin
from fleet.constants import FULL_REPAIR_EVERY_H
from fleet.ops import retention
from fleet.settings import get_settings


def ceo(ctx: HeartbeatContext) -> None:
    """Audit drift, stranded bets and refusal loops; file a task per finding, close the resolved ones."""
    # Findings no single agent owns go to this agent, whatever the catalogue names it.
    drift = audit.drift_findings(ctx.registry, ctx.protocols, ctx.db, ctx.now, auditor=ctx.agent)
    stranded = audit.stranded_findings(ctx.registry, ctx.protocols, ctx.db, ctx.now, auditor=ctx.agent)
    loops = audit.refusal_loop_findings(ctx.registry, ctx.protocols, ctx.db, ctx.now, auditor=ctx.agent)
    ctx.count("drift", len(drift))
    ctx.count("stranded", len(stranded))
    if loops:
        ctx.count("loops", len(loops))
    for origin, findings in (
        (Origin.DRIFT, drift),
        (Origin.STRANDED, stranded),
        (Origin.REFUSAL_LOOP, loops),
    ):
        filed, closed = audit.file_findings(ctx.board, findings, origin=origin, by=ctx.agent)
        ctx.count("filed", filed)
        ctx.count("closed", closed)
        ctx.log(str(origin), findings=len(findings), filed=filed, closed=closed)


def watchdog(ctx: HeartbeatContext) -> None:
    """Roll lagging live projections forward, rebuild lost counts; prune what is past the window.

    Costs the live work, except for one full repair every ``FULL_REPAIR_EVERY_H`` hours.
    """
    repaired = ctx.enforcer.ledger.sweep(timedelta(hours=FULL_REPAIR_EVERY_H))
    ctx.enforcer.ledger.tally.ensure_built()
    ctx.count("repaired", repaired)
    ctx.log("repair", repaired=repaired)
    window = timedelta(days=get_settings().retention_days)
    pruned = retention.prune(ctx.db, window, ctx.now)
    ctx.count("pruned", pruned.total)
    ctx.log("prune", cutoff=pruned.cutoff.isoformat(), **pruned.deleted)
