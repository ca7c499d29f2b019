"""``fleet prune [--dry-run] [--days N]``: delete what the retention window lets go."""

from __future__ import annotations

from datetime import timedelta

import typer

from fleet.cli.common import connect
from fleet.cli.output import add, emit, json_option, positive, section, show, table, when
from fleet.constants import MAX_RETENTION_DAYS
from fleet.errors import BadArgument
from fleet.ops import retention


def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="count what would go; delete nothing"),
    days: float | None = typer.Option(
        None, "--days", help="retention window in days (default: FLEET_RETENTION_DAYS)"
    ),
    as_json: bool = json_option(),
) -> None:
    """Delete claims, heartbeats, refusals, failures, task events and probes past the retention
    window that no live item or open task needs (transitions are never pruned)."""
    ops = connect()
    window_days = ops.settings.retention_days if days is None else days
    positive("--days", window_days)
    if window_days > MAX_RETENTION_DAYS:
        raise BadArgument(f"--days must be at most {MAX_RETENTION_DAYS}, got {window_days:g}")
    pruned = retention.prune(ops.db, timedelta(days=window_days), ops.enforcer.ledger.now(), dry_run=dry_run)
    data = {"cutoff": pruned.cutoff, "dry_run": dry_run, "deleted": pruned.deleted, "total": pruned.total}
    if emit(data, as_json):
        return
    verb = "would delete" if dry_run else "deleted"
    view = table("collection", verb)
    for collection, count in pruned.deleted.items():
        add(view, collection, str(count))
    show(section(f"{verb} {pruned.total} document(s) older than {when(pruned.cutoff)}", view))


def register(app: typer.Typer) -> None:
    app.command("prune")(prune)
