"""The ledger's commands: ``fleet status``, ``fleet bets``, ``fleet bet ID`` and ``fleet seed N``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from fleet import queries
from fleet.cli.common import connect
from fleet.cli.output import (
    add,
    at_least_one,
    at_most,
    console,
    emit,
    json_option,
    jsonable,
    plural,
    positive,
    say,
    section,
    show,
    table,
    when,
)
from fleet.constants import MAX_SEED_BETS, OPERATOR
from fleet.definitions.catalogue import Registry, get_registry
from fleet.definitions.pipeline import Pipeline, fill_seed_fields
from fleet.definitions.protocols import load_protocols
from fleet.errors import BadArgument
from fleet.mcp.rejections import RejectedToken
from fleet.runtime import wake
from fleet.runtime.handoff import HANDOFF_WINDOW_H, Handoff
from fleet.store import ensure_indexes

# --- status --------------------------------------------------------------------------


def status(
    as_json: bool = json_option(),
    watch: bool = typer.Option(False, "--watch", help="refresh until Ctrl-C"),
    interval: float = typer.Option(2.0, "--interval", help="seconds between refreshes with --watch"),
    minutes: float = typer.Option(60.0, "--minutes", help="throughput window, in minutes"),
) -> None:
    """Items per stage, recent throughput, stranded and drift counts, open tasks, queue depths."""
    positive("--interval", interval)
    positive("--minutes", minutes)
    ops = connect(broker=True)
    noun = ops.noun

    def snapshot() -> queries.Status:
        settings = ops.settings
        return queries.status_report(
            ops.db, settings.broker_url, ops.registry, settings.protocols_dir, minutes
        )

    if watch:
        _watch(snapshot, noun, as_json, interval)
        return
    report = snapshot()  # once: the table shows the same snapshot JSON would have printed
    if not emit(report, as_json):
        show(status_view(report, noun))


def _watch(snapshot: Callable[[], queries.Status], noun: str, as_json: bool, interval: float) -> None:
    """Refresh until Ctrl-C: a live view, or with ``--json`` one JSON line per refresh."""
    try:
        if as_json:
            while True:
                typer.echo(json.dumps(jsonable(snapshot())))
                time.sleep(interval)  # the refresh period the operator asked for
        with Live(status_view(snapshot(), noun), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)  # the refresh period the operator asked for
                live.update(status_view(snapshot(), noun), refresh=True)
    except KeyboardInterrupt:
        return


def status_view(s: queries.Status, noun: str) -> RenderableType:
    """The status snapshot: headline counts, then stages beside throughput and queues."""
    audit = f"drift findings: {s.drift}   stranded {noun}s: {s.stranded}"
    if s.audit_error:
        audit = f"[red]audit not run: {escape(s.audit_error)}[/red]"
    peak = s.peak
    lines = [
        f"[bold]{escape(s.pipeline)}[/bold] at {when(s.at)} UTC: {plural(s.bets, noun)}, "
        f"{s.open_tasks} open board task(s)",
        audit,
        f"peak concurrent heartbeats (24h): {peak.peak} at {when(peak.at)} ({peak.heartbeats} heartbeats)",
    ]
    if s.spend_today:
        spent = ", ".join(f"{escape(agent)} ${cost:.2f}" for agent, cost in sorted(s.spend_today.items()))
        lines.append(f"spend today (UTC): {spent}")
    grid = Table.grid(padding=(0, 4))
    grid.add_row(_stages_view(s.stages, noun), Group(_throughput_view(s.throughput), _queues_view(s.queues)))
    moves = _refused_moves_view(s.refused_moves)
    rejected = _rejected_tokens_view(s.rejected_tokens)
    refused = _refusals_view(s.refusals, noun)
    return Group(*lines, "", grid, handoff_view(s.handoffs), moves, refused, rejected)


def handoff_view(rows: Iterable[Handoff]) -> RenderableType:
    """Handoff latency per stage and agent: arrival at a stage to the owner's pickup."""
    title = f"handoff latency (arrival -> pickup), last {HANDOFF_WINDOW_H:g} h"
    view = table("stage", "agent", "bets", "median s", "p95 s", "max s")
    for r in rows:
        add(view, r.stage, r.agent, str(r.bets), f"{r.median_s:.2f}", f"{r.p95_s:.2f}", f"{r.max_s:.2f}")
    return section(title, view) if view.row_count else section(f"{title}: none")


def _stages_view(stages: Iterable[queries.StageCount], noun: str) -> RenderableType:
    view = table("stage", f"{noun}s")
    for row in stages:
        label = row.stage + (" (terminal)" if row.terminal else "") + ("" if row.known else " (unknown!)")
        add(view, label, str(row.count))
    return section(f"{noun}s per stage", view)


def _throughput_view(t: queries.Throughput) -> RenderableType:
    view = table("kind", "transitions")
    for kind, count in t.by_kind.items():
        add(view, kind, str(count))
    return section(f"last {t.minutes:g} min: {t.total} transitions, {t.refused} refused", view)


def _queues_view(queue_depths: dict[str, int]) -> RenderableType:
    view = table("queue", "waiting")
    for name, depth in queue_depths.items():
        add(view, name, str(depth))
    return section("queue depths", view)


def _refused_moves_view(moves: list[queries.RefusedMove]) -> RenderableType:
    title = f"refusals per agent and move, last {queries.REFUSED_MOVES_WINDOW.total_seconds() / 3600:g} h"
    if not moves:
        return section(f"{title}: none")
    view = table("agent", "move", "refusals", "items", "held back")
    for m in moves:
        add(view, m.agent, m.move, str(m.refusals), str(m.bets), str(m.held))
    return section(title, view)


def _rejected_tokens_view(rows: list[RejectedToken]) -> RenderableType:
    title = "MCP calls with a bad token (someone claiming to be an agent), last 24 h"
    if not rows:
        return section(f"{title}: none")
    view = table("claimed agent", "source", "calls", "last")
    for r in rows:
        add(view, r.claimed_agent, r.source, str(r.count), when(r.last_at))
    return section(title, view)


def _refusals_view(refusals: queries.RefusalSummary, noun: str) -> RenderableType:
    title = f"refused transitions: {refusals.total}"
    if not refusals.latest:
        return section(title)
    view = table("at", noun, "agent", "move", "reason")
    for r in refusals.latest:
        move = f"{r.get('from_stage') or '(new)'} -> {r.get('to_stage')}"
        add(view, when(r.get("at")), str(r.get("bet_id")), str(r.get("agent")), move, str(r.get("reason")))
    return section(f"{title} (latest {len(refusals.latest)})", view)


# --- bets ----------------------------------------------------------------------------


def bets(
    stage: str | None = typer.Option(None, "--stage", help="only those at this pipeline stage"),
    limit: int = typer.Option(20, "--limit", help="how many to list"),
    as_json: bool = json_option(),
) -> None:
    """List the ledger's items (bets), most recently moved first."""
    at_least_one("--limit", limit)
    if stage is not None:
        queries.require_stage(get_registry().pipeline, stage)
    ops = connect()
    rows = queries.list_bets(ops.db, ops.registry.pipeline, stage, limit)
    total = queries.count_bets(ops.db, ops.registry.pipeline, stage)
    if emit({"stage": stage, "total": total, "bets": rows}, as_json):
        return
    view = table(ops.noun, "stage", "seq", "created by", "moved at", "fields")
    for row in rows:
        fields = row.problem or _fields(row.fields)
        add(view, row.bet_id, str(row.stage), str(row.seq), str(row.created_by), when(row.updated_at), fields)
    where = f" at {stage}" if stage else ""
    show(section(f"{len(rows)} of {plural(total, ops.noun)}{where}, most recently moved first", view))


def _fields(fields: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in fields.items())


def bet(
    bet_id: str = typer.Argument(..., help="the item's id (see `fleet bets`)"),
    as_json: bool = json_option(),
) -> None:
    """One item's timeline: who moved it, when, under which protocols, with what verdict; refusals too."""
    ops = connect()
    timeline = queries.bet_timeline(ops.db, ops.enforcer, bet_id)
    if emit(timeline, as_json):
        return
    say(
        f"{ops.noun} {timeline.bet_id} at {timeline.stage} (seq {timeline.seq}), "
        f"created by {timeline.created_by} at {when(timeline.created_at)}"
    )
    say("fields: " + _fields(timeline.fields))
    show(_transitions_view(timeline.transitions))
    if timeline.touches:
        show(_touches_view(timeline.touches))
    if timeline.refusals:
        show(_bet_refusals_view(timeline.refusals))
    for hold in timeline.holds:
        say(
            f"held back from {hold['agent']} at seq {hold['seq']} after {hold['refusals']} refusals of "
            f"{hold['from_stage']} -> {hold['to_stage']} ({hold['reason']}), "
            "until its spec or the protocols change"
        )


def _protocols_label(version: object, hash_: object) -> str:
    return "-" if version is None else f"{version} ({hash_})"


def _transitions_view(entries: Iterable[queries.TimelineEntry]) -> RenderableType:
    view = table("seq", "at", "agent", "move", "verdict", "protocols", "heartbeat")
    for e in entries:
        move = f"{e.kind} {e.from_stage or '(new)'} -> {e.to_stage}"
        protocols = _protocols_label(e.protocol_version, e.protocol_hash)
        add(view, str(e.seq), when(e.at), e.agent, move, e.verdict, protocols, e.heartbeat_id or "-")
    return section("transitions", view)


def _touches_view(touches: Iterable[dict[str, Any]]) -> RenderableType:
    view = table("at", "agent", "seq", "outcome", "protocols", "heartbeat")
    for t in touches:
        protocols = _protocols_label(t.get("protocol_version"), t.get("protocol_hash"))
        at, agent, seq, what = when(t.get("at")), t.get("agent"), t.get("seq"), t.get("what")
        add(view, at, str(agent), str(seq), str(what), protocols, str(t.get("heartbeat_id")))
    return section("heartbeats that handled it", view)


def _bet_refusals_view(refusals: Iterable[dict[str, Any]]) -> RenderableType:
    view = table("at", "agent", "move", "reason", "detail")
    for r in refusals:
        move = f"{r.get('from_stage') or '(new)'} -> {r.get('to_stage')}"
        add(view, when(r.get("at")), str(r.get("agent")), move, str(r.get("reason")), str(r.get("detail")))
    return section("refused attempts", view)


#: ``--field KEY=VALUE`` (repeatable; a module-level default: a list is not immutable).
FIELD_OPTION: Any = typer.Option(
    None, "--field", help="KEY=VALUE set on each ({n} is its number); default: the pipeline's seed fields"
)

# --- seed -------------------------------------------------------------------------------------


def seed(
    n: int = typer.Argument(..., metavar="N", help="how many to create (at least 1)"),
    agent: str | None = typer.Option(
        None, "--agent", help="the creating agent (default: the pipeline's first)"
    ),
    field: list[str] | None = FIELD_OPTION,
    as_json: bool = json_option(),
) -> None:
    """Create N items in the initial stage, through an agent that may create them and the enforcer."""
    at_least_one("N", n)
    at_most("N", n, MAX_SEED_BETS)
    registry = get_registry()
    creator = _creator(registry, agent)
    templates = _templates(registry.pipeline, field or [])
    ops = connect()
    stamp = load_protocols(ops.settings.protocols_dir).stamp
    ensure_indexes(ops.db)
    created = [
        ops.enforcer.create_bet(
            creator, seed_fields(templates, i), stamp=stamp, verdict=f"seeded by {OPERATOR}"
        )
        for i in range(1, n + 1)
    ]
    # The first stage's pollers run now, not at their next slot (best effort: a lost wake costs latency).
    wake.on_arrival(wake.Wakeup.of(registry, ops.settings), registry.pipeline.initial_stage)
    if emit({"agent": creator, "created": created}, as_json):
        return
    view = table(ops.noun, "stage", "fields")
    for b in created:
        add(view, b.bet_id, b.stage, _fields(b.fields))
    show(section(f"{plural(len(created), ops.noun)} created by {creator}", view))


def _creator(registry: Registry, agent: str | None) -> str:
    creators = registry.pipeline.creators
    if agent is None:
        return creators[0]
    registry.require(agent)
    if agent not in creators:
        noun = registry.pipeline.noun
        raise BadArgument(
            f"agent {agent!r} cannot create {noun}s; the pipeline's creators: {', '.join(creators)}"
        )
    return agent


def _templates(pipeline: Pipeline, given: list[str]) -> dict[str, str]:
    """The ``--field`` flags as a mapping, else the pipeline's seed fields (neutral by default)."""
    if not given:
        return dict(pipeline.seed_fields)
    templates = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadArgument(f"--field must be KEY=VALUE, got {item!r}")
        templates[key.strip()] = value
    return templates


def seed_fields(templates: dict[str, str], i: int) -> dict[str, Any]:
    """One seeded item's fields: each template with ``{n}`` as its number, and who seeded it."""
    tag = uuid.uuid4().hex[:6]  # tells apart items seeded with the same number by separate runs
    return {**fill_seed_fields(templates, i), "seed": f"#{i} ({tag})", "seeded_by": OPERATOR}


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("bets")(bets)
    app.command("bet")(bet)
    app.command("seed", context_settings={"ignore_unknown_options": True})(seed)
