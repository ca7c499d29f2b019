"""Store upkeep: ``fleet migrate`` (finished bets out of the working set) and ``fleet tally``
(the running counts: show, ``--check`` against a recount, ``--rebuild`` from the ledger)."""

from __future__ import annotations

import typer

from fleet.cli.common import connect
from fleet.cli.output import add, emit, json_option, say, section, show, table
from fleet.store import ensure_indexes


def migrate(as_json: bool = json_option()) -> None:
    """Move finished bets' projections out of the live set, then recount (idempotent)."""
    ops = connect(broker=True)
    ensure_indexes(ops.db)
    ledger = ops.enforcer.ledger
    moved = ledger.migrate(lambda n: say(f"  moved {n}..."))
    records = ledger.tally.rebuild()
    if not emit({"moved": moved, "records_counted": records}, as_json):
        say(f"moved {moved} finished {ops.noun}(s) out of the live set; counted {records} record(s)")


def tally(
    check: bool = typer.Option(False, "--check", help="compare with a recount; exit 1 on a difference"),
    rebuild: bool = typer.Option(False, "--rebuild", help="recount everything from the ledger"),
    as_json: bool = json_option(),
) -> None:
    """The running counts the status, console and /metrics read (kept in Redis)."""
    ops = connect(broker=True)
    counts = ops.enforcer.ledger.tally
    records = counts.rebuild(lambda n: say(f"  read {n} record(s)...")) if rebuild else None
    differences = counts.check() if check else []
    stages, built_at = counts.stage_counts(), counts.built_at()
    data = {"built_at": built_at, "stages": stages, "differences": differences, "records_counted": records}
    if not emit(data, as_json):
        view = table("stage", "count")
        for stage, n in sorted(stages.items()):
            add(view, stage, str(n))
        show(section(f"counts rebuilt from the ledger at {built_at}", view))
        for line in differences:
            say(f"differs: {line}")
        if check and not differences:
            say("the counts equal a recount from the ledger")
    if differences:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    app.command("tally")(tally)
