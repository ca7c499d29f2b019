"""The fleet's definitions: ``fleet agents``, ``fleet schedule`` and ``fleet pipeline``."""

from __future__ import annotations

import typer

from fleet import queries
from fleet.cli.common import connect
from fleet.cli.output import add, emit, json_option, say, section, show, table, when
from fleet.definitions.catalogue import get_registry
from fleet.definitions.pipeline import render_stages, render_table
from fleet.logs import format_actions


def agents(as_json: bool = json_option()) -> None:
    """Every agent: group, queue, start times, what it polls and owns, protocols; its last heartbeat."""
    ops = connect()
    rows = queries.agent_rows(ops.db, ops.registry)
    if emit(rows, as_json):
        return
    view = table(
        "agent", "group/queue", "starts (UTC)", "polls", "owns", "protocols", "beats", "spend today",
        "last heartbeat",
    )  # fmt: skip
    for row in rows:
        polls = ", ".join(row.polls) or (f"creates {ops.noun}s" if row.creates else "-")
        owns = "\n".join(row.owns) or "-"
        starts = " ".join(row.starts)
        last = _last_beat(row.last)
        kind = "" if row.handler_kind == "python" else f" ({row.handler_kind})"
        add(
            view,
            row.name + kind,
            f"{row.group}/{row.queue}",
            starts,
            polls,
            owns,
            row.protocol_version,
            row.heartbeats,
            f"${row.spend_today_usd:.2f}" if row.spend_today_usd else "-",
            last,
        )
    show(view)


def _last_beat(last: queries.HeartbeatSummary | None) -> str:
    if last is None:
        return "never"
    error = f" ({last.error})" if last.error else ""
    return f"{when(last.started_at)} {last.reason} {last.status}{error}: {format_actions(last.actions)}"


def schedule(
    as_json: bool = json_option(),
    naive: bool = typer.Option(False, "--naive", help="show the fixed-interval schedule instead"),
) -> None:
    """Per-hour load of the staggered schedule, and its peak against fixed intervals."""
    rep = queries.schedule_report(get_registry(), naive)
    if emit(rep, as_json):
        return
    kind = "fixed-interval (naive)" if naive else "staggered"
    view = table("hour (UTC)", "starts", "busiest minute", "peak running")
    for h in rep.hours:
        add(view, f"{h.hour:02d}:00", str(h.starts), str(h.busiest_minute), str(h.peak_running))
    show(section(f"{kind} schedule of {rep.agents} agents", view))
    say(f"peak running at once: {rep.peak_running} staggered, {rep.naive_peak_running} on fixed intervals")


def pipeline(as_json: bool = json_option()) -> None:
    """The pipeline: its stages and the handoff map (who owns each move), as Markdown."""
    loaded = get_registry().pipeline
    if emit(loaded.model_dump(mode="json", by_alias=True), as_json):
        return
    typer.echo(f"{render_stages(loaded)}\n\n{render_table(loaded)}")


def register(app: typer.Typer) -> None:
    app.command("agents")(agents)
    app.command("schedule")(schedule)
    app.command("pipeline")(pipeline)
