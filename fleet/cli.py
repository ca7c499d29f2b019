"""The ``fleet`` command line (typer + rich): local services, and the operator's questions.

Every error an operator can cause or meet is a :class:`FleetError`; ``main``
prints it as one line and exits non-zero, never with a traceback. Every read
command takes ``--json``. The queries behind the commands live in
:mod:`fleet.report`; this module parses arguments and formats answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import typer
from kombu.exceptions import OperationalError as KombuOperationalError
from pydantic_core import to_jsonable_python
from pymongo.database import Database
from pymongo.errors import PyMongoError
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from fleet import report, retention
from fleet import services as svc
from fleet.agents import Registry, get_registry
from fleet.audit import file_findings
from fleet.board import Board, Origin
from fleet.constants import HEARTBEAT_TASK, MAX_RETENTION_DAYS, PROBE_TASK, PROBES
from fleet.errors import BadArgument, BrokerUnavailable, FleetError, first_line
from fleet.handoff import HANDOFF_WINDOW_H, Handoff
from fleet.ledger import Enforcer
from fleet.logs import format_actions
from fleet.protocols import load_protocols
from fleet.routing import route_task
from fleet.settings import Settings, get_settings, mask_url
from fleet.store import Document, database, ensure_indexes, ping_mongo, ping_redis, redis_client

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Operate the fleet: local services, status, bets, agents, the schedule, the board, audits.",
)
services_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Local Redis and FerretDB.")
app.add_typer(services_app, name="services")
board_app = typer.Typer(add_completion=False, help="The task board: open tasks; `board close` closes one.")
app.add_typer(board_app, name="board")

console = Console()
err_console = Console(stderr=True)

JSON_HELP = "print JSON instead of tables"
#: ``--procfile``, shared by ``doctor`` and ``up`` (a module-level default: Path is not immutable).
PROCFILE_OPTION: Any = typer.Option("Procfile", "--procfile", help="the Procfile naming the worker processes")


@dataclass(frozen=True)
class Ops:
    """What a command works with: settings, the agent registry and the reachable database."""

    settings: Settings
    registry: Registry
    db: Database[Document]

    @property
    def enforcer(self) -> Enforcer:
        return Enforcer(self.db, self.registry.pipeline)

    @property
    def board(self) -> Board:
        return Board(self.db)


def connect(*, broker: bool = False) -> Ops:
    """Settings, registry and database; an unreachable store (or broker) stops the command here."""
    settings = get_settings()
    registry = get_registry()
    ping_mongo(settings)
    if broker:
        ping_redis(settings)
    return Ops(settings, registry, database(settings))


# --- output helpers ------------------------------------------------------------------


def emit(data: Any, as_json: bool) -> bool:
    """Print ``data`` (models, dates and all) as JSON when asked; return True if it was printed."""
    if as_json:
        typer.echo(json.dumps(jsonable(data), indent=2))
    return as_json


def jsonable(data: Any) -> Any:
    """``data`` as plain JSON types: models dumped, dates as ISO strings, anything else as str."""
    return to_jsonable_python(data, fallback=str)


def when(at: datetime | None) -> str:
    """A UTC time as ``YYYY-MM-DD HH:MM:SS``, or ``-``."""
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def say(text: str | Text) -> None:
    """Print one line as is (no markup: messages hold brackets), without wrapping it."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def add(view: Table, *cells: object) -> None:
    """Add a row of plain text cells (never read as rich markup)."""
    view.add_row(*(Text(str(cell)) for cell in cells))


def table(*columns: str) -> Table:
    return Table(*columns, show_edge=False)


def section(title: str, body: RenderableType | None = None) -> RenderableType:
    """A bold heading line above ``body`` (table titles would wrap to the table's width)."""
    head = Text(title, style="bold")
    return head if body is None else Group(head, body)


def at_least_one(name: str, value: float) -> None:
    if value < 1:
        raise BadArgument(f"{name} must be at least 1, got {value:g}")


def positive(name: str, value: float) -> None:
    if value <= 0:
        raise BadArgument(f"{name} must be more than 0, got {value:g}")


# --- services ------------------------------------------------------------------------


@services_app.command("install")
def services_install() -> None:
    """Install redis-server (apt-get) and build FerretDB once (cached in FLEET_HOME/bin)."""
    settings = get_settings()
    if settings.local_redis:
        console.print(f"redis-server: {svc.redis_binary()}")
    if settings.local_mongo:
        with console.status("building FerretDB (first run only, about 2 minutes)..."):
            console.print(f"ferretdb: {svc.ferretdb_binary(settings.home / 'bin')}")


@services_app.command("up")
def services_up() -> None:
    """Start the local services (those whose FLEET_*_URL is not set) on loopback."""
    settings = get_settings()
    started = svc.up(svc.for_settings(settings))
    for name, pid in started.items():
        console.print(f"{name}: running (pid {pid})")
    _print_urls(settings)


@services_app.command("down")
def services_down() -> None:
    """Stop the local services started by ``fleet services up``."""
    for name, was_running in svc.down(svc.for_settings(get_settings())).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@services_app.command("status")
def services_status(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Show which local services run, and the URLs fleet uses."""
    settings = get_settings()
    rows = [
        {"service": s.name, "port": s.port, "pid": svc.running_pid(s), "log": str(s.log_file)}
        for s in svc.for_settings(settings)
    ]
    urls = {"mongo_url": mask_url(settings.mongo_url), "broker_url": mask_url(settings.broker_url)}
    if emit({"local": rows, **urls}, as_json):
        return
    view = table("service", "port", "state", "log")
    for row in rows:
        state = f"running (pid {row['pid']})" if row["pid"] else "stopped"
        add(view, str(row["service"]), str(row["port"]), state, str(row["log"]))
    console.print(view)
    _print_urls(settings)


def _print_urls(settings: Settings) -> None:
    console.print(f"FLEET_MONGO_URL={mask_url(settings.mongo_url)}  FLEET_MONGO_DB={settings.mongo_db}")
    console.print(f"FLEET_BROKER_URL={mask_url(settings.broker_url)}")


# --- status --------------------------------------------------------------------------


@app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    watch: bool = typer.Option(False, "--watch", help="refresh until Ctrl-C"),
    interval: float = typer.Option(2.0, "--interval", help="seconds between refreshes with --watch"),
    minutes: float = typer.Option(60.0, "--minutes", help="throughput window, in minutes"),
) -> None:
    """Bets per stage, recent throughput, stranded and drift counts, open tasks, queue depths."""
    positive("--interval", interval)
    positive("--minutes", minutes)
    ops = connect(broker=True)
    with closing(redis_client(ops.settings.broker_url)) as client:

        def snapshot() -> report.Status:
            return report.status_report(ops.db, client, ops.registry, ops.settings.protocols_dir, minutes)

        if watch:
            _watch(snapshot, as_json, interval)
        elif not emit(snapshot(), as_json):
            console.print(status_view(snapshot()))


def _watch(snapshot: Callable[[], report.Status], as_json: bool, interval: float) -> None:
    """Refresh until Ctrl-C: a live view, or with ``--json`` one JSON line per refresh."""
    try:
        if as_json:
            while True:
                typer.echo(json.dumps(jsonable(snapshot())))
                time.sleep(interval)  # the refresh period the operator asked for
        with Live(status_view(snapshot()), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)  # the refresh period the operator asked for
                live.update(status_view(snapshot()), refresh=True)
    except KeyboardInterrupt:
        return


def status_view(s: report.Status) -> RenderableType:
    """The status snapshot: headline counts, then stages beside throughput and queues."""
    audit = f"drift findings: {s.drift}   stranded bets: {s.stranded}"
    if s.audit_error:
        audit = f"[red]audit not run: {escape(s.audit_error)}[/red]"
    peak = s.peak
    lines = [
        f"[bold]{s.pipeline}[/bold] at {when(s.at)} UTC: {s.bets} bets, {s.open_tasks} open board task(s)",
        audit,
        f"peak concurrent heartbeats (24h): {peak.peak} at {when(peak.at)} ({peak.heartbeats} heartbeats)",
    ]
    grid = Table.grid(padding=(0, 4))
    grid.add_row(_stages_view(s.stages), Group(_throughput_view(s.throughput), _queues_view(s.queues)))
    moves = _refused_moves_view(s.refused_moves)
    return Group(*lines, "", grid, handoff_view(s.handoffs), moves, _refusals_view(s.refusals))


def handoff_view(rows: Iterable[Handoff]) -> RenderableType:
    """Handoff latency per stage and agent: arrival at a stage to the owner's pickup."""
    title = f"handoff latency (arrival -> pickup), last {HANDOFF_WINDOW_H:g} h"
    view = table("stage", "agent", "bets", "median s", "p95 s", "max s")
    for r in rows:
        add(view, r.stage, r.agent, str(r.bets), f"{r.median_s:.2f}", f"{r.p95_s:.2f}", f"{r.max_s:.2f}")
    return section(title, view) if view.row_count else section(f"{title}: none")


def _stages_view(stages: Iterable[report.StageCount]) -> RenderableType:
    view = table("stage", "bets")
    for row in stages:
        label = row.stage + (" (terminal)" if row.terminal else "") + ("" if row.known else " (unknown!)")
        add(view, label, str(row.count))
    return section("bets per stage", view)


def _throughput_view(t: report.Throughput) -> RenderableType:
    view = table("kind", "transitions")
    for kind, count in t.by_kind.items():
        add(view, kind, str(count))
    return section(f"last {t.minutes:g} min: {t.total} transitions, {t.refused} refused", view)


def _queues_view(queues: dict[str, int]) -> RenderableType:
    view = table("queue", "waiting")
    for name, depth in queues.items():
        add(view, name, str(depth))
    return section("queue depths", view)


def _refused_moves_view(moves: list[report.RefusedMove]) -> RenderableType:
    title = f"refusals per agent and move, last {report.REFUSED_MOVES_WINDOW.total_seconds() / 3600:g} h"
    if not moves:
        return section(f"{title}: none")
    view = table("agent", "move", "refusals", "items", "held back")
    for m in moves:
        add(view, m.agent, m.move, str(m.refusals), str(m.bets), str(m.held))
    return section(title, view)


def _refusals_view(refusals: report.RefusalSummary) -> RenderableType:
    title = f"refused transitions: {refusals.total}"
    if not refusals.latest:
        return section(title)
    view = table("at", "bet", "agent", "move", "reason")
    for r in refusals.latest:
        move = f"{r.get('from_stage') or '(new)'} -> {r.get('to_stage')}"
        add(view, when(r.get("at")), str(r.get("bet_id")), str(r.get("agent")), move, str(r.get("reason")))
    return section(f"{title} (latest {len(refusals.latest)})", view)


# --- bets ----------------------------------------------------------------------------


@app.command("bets")
def bets(
    stage: str | None = typer.Option(None, "--stage", help="only bets at this pipeline stage"),
    limit: int = typer.Option(20, "--limit", help="how many bets to list"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List bets, most recently moved first."""
    at_least_one("--limit", limit)
    if stage is not None:
        report.require_stage(get_registry().pipeline, stage)
    ops = connect()
    rows = report.list_bets(ops.db, ops.registry.pipeline, stage, limit)
    total = report.count_bets(ops.db, ops.registry.pipeline, stage)
    if emit({"stage": stage, "total": total, "bets": rows}, as_json):
        return
    view = table("bet", "stage", "seq", "created by", "moved at", "fields")
    for row in rows:
        fields = row.problem or ", ".join(f"{k}={v}" for k, v in row.fields.items())
        add(view, row.bet_id, str(row.stage), str(row.seq), str(row.created_by), when(row.updated_at), fields)
    console.print(section(_bets_title(stage, rows, total), view))


def _bets_title(stage: str | None, rows: list[report.BetRow], total: int) -> str:
    where = f" at {stage}" if stage else ""
    return f"{len(rows)} of {total} bet(s){where}, most recently moved first"


@app.command("bet")
def bet(
    bet_id: str = typer.Argument(..., help="the bet's id"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """One bet's timeline: who moved it, when, under which protocols, with what verdict; refusals too."""
    ops = connect()
    timeline = report.bet_timeline(ops.db, ops.enforcer, bet_id)
    if emit(timeline, as_json):
        return
    say(
        f"bet {timeline.bet_id} at {timeline.stage} (seq {timeline.seq}), "
        f"created by {timeline.created_by} at {when(timeline.created_at)}"
    )
    say("fields: " + ", ".join(f"{k}={v}" for k, v in timeline.fields.items()))
    console.print(_transitions_view(timeline.transitions))
    if timeline.touches:
        console.print(_touches_view(timeline.touches))
    if timeline.refusals:
        console.print(_bet_refusals_view(timeline.refusals))
    for hold in timeline.holds:
        say(
            f"held back from {hold['agent']} at seq {hold['seq']} after {hold['refusals']} refusals of "
            f"{hold['from_stage']} -> {hold['to_stage']} ({hold['reason']}), "
            "until its spec or the protocols change"
        )


def _protocols_label(version: object, hash_: object) -> str:
    return "-" if version is None else f"{version} ({hash_})"


def _transitions_view(entries: Iterable[report.TimelineEntry]) -> RenderableType:
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
        add(
            view,
            when(t.get("at")),
            str(t.get("agent")),
            str(t.get("seq")),
            str(t.get("what")),
            protocols,
            str(t.get("heartbeat_id")),
        )
    return section("heartbeats that handled it", view)


def _bet_refusals_view(refusals: Iterable[dict[str, Any]]) -> RenderableType:
    view = table("at", "agent", "move", "reason", "detail")
    for r in refusals:
        move = f"{r.get('from_stage') or '(new)'} -> {r.get('to_stage')}"
        add(view, when(r.get("at")), str(r.get("agent")), move, str(r.get("reason")), str(r.get("detail")))
    return section("refused attempts", view)


# --- trigger ------------------------------------------------------------------------------


@app.command("trigger")
def trigger(
    agent: str = typer.Argument(..., help="the agent to run now"),
    debug: bool = typer.Option(False, "--debug", help="log the heartbeat's decision trace"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Send an ad-hoc heartbeat; routing puts it on the agent's queue (like `celery call`)."""
    spec = get_registry().require(agent)
    ping_redis(get_settings())
    kwargs = {"reason": "adhoc", "debug": debug}
    queue = route_task(HEARTBEAT_TASK, [spec.name], kwargs, {})["queue"]
    task_id = _send(HEARTBEAT_TASK, [spec.name], kwargs)
    sent = {"task_id": task_id, "agent": spec.name, "queue": queue, **kwargs}
    if not emit(sent, as_json):
        say(f"sent {HEARTBEAT_TASK}({spec.name}, reason=adhoc, debug={debug}): task {task_id}, queue {queue}")


def _send(task: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> str:
    """Publish one task through the broker; return its id."""
    from fleet.celery_app import get_app  # lazy: building the app reads the whole catalogue

    try:
        return str(get_app().send_task(task, args=args, kwargs=kwargs or {}).id)
    except KombuOperationalError as exc:
        raise BrokerUnavailable(f"cannot send {task}: {first_line(exc)}") from None


# --- agents and the schedule -----------------------------------------------------------------


@app.command("agents")
def agents(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Every agent: group, queue, start times, what it polls and owns, protocols; its last heartbeat."""
    ops = connect()
    rows = report.agent_rows(ops.db, ops.registry)
    if emit(rows, as_json):
        return
    view = table(
        "agent", "group/queue", "starts (UTC)", "polls", "owns", "protocols", "beats", "last heartbeat"
    )
    for row in rows:
        polls = ", ".join(row.polls) or ("creates bets" if row.creates else "-")
        add(
            view,
            row.name,
            f"{row.group}/{row.queue}",
            " ".join(row.starts),
            polls,
            "\n".join(row.owns) or "-",
            row.protocol_version,
            str(row.heartbeats),
            _last_beat(row.last),
        )
    console.print(view)


def _last_beat(last: report.HeartbeatSummary | None) -> str:
    if last is None:
        return "never"
    error = f" ({last.error})" if last.error else ""
    return f"{when(last.started_at)} {last.reason} {last.status}{error}: {format_actions(last.actions)}"


@app.command("schedule")
def schedule(
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    naive: bool = typer.Option(False, "--naive", help="show the fixed-interval schedule instead"),
) -> None:
    """Per-hour load of the staggered schedule, and its peak against fixed intervals."""
    rep = report.schedule_report(get_registry(), naive)
    if emit(rep, as_json):
        return
    kind = "fixed-interval (naive)" if naive else "staggered"
    view = table("hour (UTC)", "starts", "busiest minute", "peak running")
    for h in rep.hours:
        add(view, f"{h.hour:02d}:00", str(h.starts), str(h.busiest_minute), str(h.peak_running))
    console.print(section(f"{kind} schedule of {rep.agents} agents", view))
    say(f"peak running at once: {rep.peak_running} staggered, {rep.naive_peak_running} on fixed intervals")


@app.command("pipeline")
def pipeline_map(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The pipeline: its stages and the handoff map (who owns each move), as Markdown."""
    from fleet.pipeline import render_stages, render_table

    pipeline = get_registry().pipeline
    if emit(pipeline.model_dump(mode="json", by_alias=True), as_json):
        return
    typer.echo(f"{render_stages(pipeline)}\n\n{render_table(pipeline)}")


# --- the board ------------------------------------------------------------------------------


@board_app.callback(invoke_without_command=True)
def board(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "--all", help="closed tasks too, newest first"),
    limit: int = typer.Option(50, "--limit", help="how many tasks to list"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List open board tasks (oldest first), or with --all every task (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    at_least_one("--limit", limit)
    ops = connect()
    tasks = report.board_tasks(ops.db, ops.board, show_all, limit)
    if emit(tasks, as_json):
        return
    title = f"{len(tasks)} task(s)" if show_all else f"{len(tasks)} open task(s)"
    if not tasks:
        say(f"no tasks{'' if show_all else ' open'}")
        return
    view = table("task", "status", "assignee", "origin", "title", "updated")
    for task in tasks:
        add(
            view,
            task.task_id,
            str(task.status),
            task.assignee,
            str(task.origin),
            task.title,
            when(task.updated_at),
        )
    console.print(section(title, view))


@board_app.command("close")
def board_close(
    task_id: str = typer.Argument(..., help="the task's id (see `fleet board`)"),
    reason: str = typer.Option(..., "--reason", help="why it is closed (kept in its history)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Close one board task for good, as the operator."""
    if not reason.strip():
        raise BadArgument("--reason must not be empty")
    task = connect().board.close(task_id, by=report.OPERATOR, reason=reason)
    if not emit(task, as_json):
        say(f"closed {task.task_id}: {task.title}")


# --- audit and verify ------------------------------------------------------------------------


@app.command("audit")
def audit(
    file: bool = typer.Option(False, "--file", help="file a board task per finding; close resolved ones"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Drift, stranded-bet and refusal-loop findings now (the CEO's audit); --file puts them on the board."""
    ops = connect()
    loaded = load_protocols(ops.settings.protocols_dir)
    found = report.audit_report(ops.db, ops.registry, loaded, datetime.now(UTC))
    filed = _file(ops, found) if file else None
    if emit({**jsonable(found), "filed": filed}, as_json):
        return
    say(f"protocols {found.protocol_version} ({found.protocol_hash})")
    for name, findings in (
        ("drift", found.drift),
        ("stranded", found.stranded),
        ("refusal loops", found.loops),
    ):
        view = table("kind", "agent", "finding")
        for f in findings:
            add(view, str(f.kind), f.agent, f.title)
        console.print(section(f"{name}: {len(findings)} finding(s)", view if findings else None))
    for origin, counts in (filed or {}).items():
        say(f"{origin}: filed {counts['filed']} task(s), closed {counts['closed']} resolved")


def _file(ops: Ops, found: report.AuditReport) -> dict[str, dict[str, int]]:
    """File the findings as board tasks by the operator; close each origin's resolved tasks."""
    ensure_indexes(ops.db)
    done = {}
    origins = (
        (Origin.DRIFT, found.drift),
        (Origin.STRANDED, found.stranded),
        (Origin.REFUSAL_LOOP, found.loops),
    )
    for origin, findings in origins:
        filed, closed = file_findings(ops.board, findings, origin=origin, by=report.OPERATOR)
        done[str(origin)] = {"filed": filed, "closed": closed}
    return done


@app.command("verify")
def verify(
    bet_id: str | None = typer.Option(None, "--bet", help="check one bet only"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check the ledger's invariants; exit code 1 when any is broken (verify a quiet ledger)."""
    violations = connect().enforcer.verify(bet_id)
    if not emit({"bet_id": bet_id, "ok": not violations, "violations": violations}, as_json):
        view = table("bet", "seq", "problem")
        for v in violations:
            add(view, v.bet_id, "-" if v.seq is None else str(v.seq), v.problem)
        console.print(section(f"{len(violations)} violation(s)", view) if violations else "no violations")
    if violations:
        raise typer.Exit(1)


@app.command("prune")
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would go; delete nothing"),
    days: float | None = typer.Option(
        None, "--days", help="retention window in days (default: FLEET_RETENTION_DAYS)"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Delete claims, heartbeats, refusals, failures, task events and probes past the retention
    window that no live bet or open task needs (transitions are never pruned)."""
    ops = connect()
    window_days = ops.settings.retention_days if days is None else days
    positive("--days", window_days)
    if window_days > MAX_RETENTION_DAYS:
        raise BadArgument(f"--days must be at most {MAX_RETENTION_DAYS}, got {window_days:g}")
    pruned = retention.prune(ops.db, timedelta(days=window_days), ops.enforcer.ledger.now(), dry_run=dry_run)
    data = {"cutoff": pruned.cutoff, "dry_run": dry_run, "deleted": pruned.deleted, "total": pruned.total}
    if not emit(data, as_json):
        verb = "would delete" if dry_run else "deleted"
        view = table("collection", verb)
        for collection, count in pruned.deleted.items():
            add(view, collection, str(count))
        console.print(section(f"{verb} {pruned.total} document(s) older than {when(pruned.cutoff)}", view))


# --- seed -------------------------------------------------------------------------------------


@app.command("seed", context_settings={"ignore_unknown_options": True})
def seed(
    n: int = typer.Argument(..., metavar="N", help="how many bets to create (at least 1)"),
    agent: str | None = typer.Option(None, "--agent", help="the sourcing agent (default: the first)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create N demo bets in the initial stage, through a sourcing agent and the enforcer."""
    at_least_one("N", n)
    creator = _creator(get_registry(), agent)
    ops = connect()
    stamp = load_protocols(ops.settings.protocols_dir).stamp
    ensure_indexes(ops.db)
    created = [
        ops.enforcer.create_bet(
            creator, _seed_fields(creator, i), stamp=stamp, verdict=f"seeded by {report.OPERATOR}"
        )
        for i in range(1, n + 1)
    ]
    if emit({"agent": creator, "created": created}, as_json):
        return
    view = table("bet", "stage", "idea")
    for b in created:
        add(view, b.bet_id, b.stage, str(b.fields.get("idea")))
    console.print(section(f"{len(created)} bet(s) created by {creator}", view))


def _creator(registry: Registry, agent: str | None) -> str:
    creators = registry.pipeline.creators
    if agent is None:
        return creators[0]
    registry.require(agent)
    if agent not in creators:
        raise BadArgument(f"agent {agent!r} cannot create bets; sourcing agents: {', '.join(creators)}")
    return agent


def _seed_fields(agent: str, i: int) -> dict[str, Any]:
    return {
        "idea": f"seeded idea #{i} ({uuid.uuid4().hex[:6]})",
        "source": agent,
        "seeded_by": report.OPERATOR,
    }


# --- doctor -----------------------------------------------------------------------------------


@app.command("doctor")
def doctor(
    procfile: Path = PROCFILE_OPTION,
    probe: bool = typer.Option(False, "--probe", help="also send a probe through a worker on the ops queue"),
    timeout: float = typer.Option(15.0, "--timeout", help="seconds to wait for the probe"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check settings, Redis, the store, protocols, pipeline, catalogue, handlers and the Procfile."""
    checks = report.doctor_checks(procfile)
    if probe and all(c.ok for c in checks):
        checks.append(_probe_check(get_settings(), timeout))
    ok = all(c.ok for c in checks)
    if not emit({"ok": ok, "checks": checks}, as_json):
        for c in checks:
            say(_check_line(c))
    if not ok:
        raise typer.Exit(1)


def _check_line(c: report.Check) -> Text:
    mark = Text("ok  ", style="green") if c.ok else Text("FAIL", style="red")
    fix = f"\n      fix: {c.fix}" if not c.ok and c.fix else ""
    return Text.assemble(mark, f" {c.name}: {c.detail}{fix}")


def _probe_check(settings: Settings, timeout: float) -> report.Check:
    """Send ``fleet.probe`` and wait for a worker to write it back to the store."""
    token = uuid.uuid4().hex
    _send(PROBE_TASK, [token])
    db = database(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = db[PROBES].find_one({"_id": token})
        if doc is not None:
            return report.Check(name="probe", ok=True, detail=f"worker on {doc.get('host')} answered")
        time.sleep(0.1)  # poll: wait for the worker's write with a deadline
    fix = "start the workers (fleet up, or a `celery -A fleet worker -Q ops` process)"
    return report.Check(name="probe", ok=False, detail=f"no worker answered within {timeout:g}s", fix=fix)


# --- up and demo --------------------------------------------------------------------------------


@app.command("up")
def up(procfile: Path = PROCFILE_OPTION) -> None:
    """Start the local services, then every Procfile process with honcho, until Ctrl-C."""
    settings = get_settings()
    if not procfile.is_file():
        raise BadArgument(f"no Procfile at {procfile}: run from the project folder or pass --procfile")
    for name, pid in svc.up(svc.for_settings(settings)).items():
        console.print(f"{name}: running (pid {pid})")
    ping_redis(settings)
    ping_mongo(settings)
    code = run_honcho(procfile)
    console.print("the fleet stopped; the services keep running: `fleet services down` stops them")
    raise typer.Exit(code)


def run_honcho(procfile: Path) -> int:
    """Run ``honcho start`` on the Procfile until it ends or Ctrl-C (or SIGTERM); 0 after a stop."""
    cmd = [sys.executable, "-m", "honcho", "start", "-f", str(procfile), "-d", str(procfile.resolve().parent)]
    # Ctrl-C must reach us even when started with SIGINT ignored (a background job); SIGTERM too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # The Procfile says `celery ...`: put this interpreter's scripts first on PATH, so a fleet
    # started as `.venv/bin/fleet up` runs the same installation without an activated venv.
    scripts = str(Path(sys.executable).parent)
    proc = subprocess.Popen(
        cmd, env={**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    )
    stopping = False
    while True:
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            stopping = True
            proc.send_signal(signal.SIGINT)  # honcho stops every process once, however often asked
            continue
        return 0 if stopping else code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command("demo")
def demo(
    minutes: float = typer.Option(3.0, min=0.1, max=120, help="how long the demo runs"),
    day_seconds: float = typer.Option(120.0, min=10, help="one schedule day lasts this many seconds"),
    bets: int = typer.Option(12, min=1, max=10000, help="bets seeded at the start"),
    failure_rate: float = typer.Option(0.1, min=0, max=1, help="share of simulated calls that fail"),
) -> None:
    """Run the 52-agent fleet live in compressed time (beat, workers, Flower); stop it all after."""
    from fleet.demo import main as demo_main

    code = demo_main(minutes=minutes, day_seconds=day_seconds, bets=bets, failure_rate=failure_rate)
    raise typer.Exit(code)


# --- entry point ----------------------------------------------------------------------------------


def main() -> None:
    """Entry point: run the app, turning every FleetError into one line and exit code 1."""
    try:
        app()  # standalone: typer itself prints usage errors as one message, exit 2
    except FleetError as exc:
        _fail(str(exc))
    except (PyMongoError, redis.RedisError, KombuOperationalError) as exc:
        # A store or broker failure no fleet module translated: still one line, never a traceback.
        _fail(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")


def _fail(message: str) -> None:
    err_console.print(Text.assemble(("error:", "red"), " ", message), highlight=False, soft_wrap=True)
    sys.exit(1)


if __name__ == "__main__":
    main()
