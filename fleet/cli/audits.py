"""The audits: ``fleet audit [--file]`` (drift and stranded findings) and ``fleet verify``."""

from __future__ import annotations

from datetime import UTC, datetime

import typer

from fleet import queries
from fleet.audit import file_findings
from fleet.board import Origin
from fleet.cli.common import Ops, connect
from fleet.cli.output import add, emit, json_option, jsonable, say, section, show, table
from fleet.constants import OPERATOR
from fleet.definitions.protocols import load_protocols
from fleet.store import ensure_indexes


def audit(
    file: bool = typer.Option(False, "--file", help="file a board task per finding; close resolved ones"),
    as_json: bool = json_option(),
) -> None:
    """Drift, stranded and refusal-loop findings now (the auditing agent's view); --file files them."""
    ops = connect()
    loaded = load_protocols(ops.settings.protocols_dir)
    found = queries.audit_report(ops.db, ops.registry, loaded, datetime.now(UTC))
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
            add(view, f.kind, f.agent, f.title)
        show(section(f"{name}: {len(findings)} finding(s)", view if findings else None))
    for origin, counts in (filed or {}).items():
        say(f"{origin}: filed {counts['filed']} task(s), closed {counts['closed']} resolved")


def _file(ops: Ops, found: queries.AuditReport) -> dict[str, dict[str, int]]:
    """File the findings as board tasks by the operator; close each origin's resolved tasks."""
    ensure_indexes(ops.db)
    done = {}
    origins = (
        (Origin.DRIFT, found.drift),
        (Origin.STRANDED, found.stranded),
        (Origin.REFUSAL_LOOP, found.loops),
    )
    for origin, findings in origins:
        filed, closed = file_findings(ops.board, findings, origin=origin, by=OPERATOR)
        done[str(origin)] = {"filed": filed, "closed": closed}
    return done


def verify(
    bet_id: str | None = typer.Option(None, "--bet", help="check one item only"),
    as_json: bool = json_option(),
) -> None:
    """Check the ledger's invariants; exit code 1 when any is broken (verify a quiet ledger)."""
    ops = connect()
    violations = ops.enforcer.verify(bet_id)
    if not emit({"bet_id": bet_id, "ok": not violations, "violations": violations}, as_json):
        view = table(ops.noun, "seq", "problem")
        for v in violations:
            add(view, v.bet_id, "-" if v.seq is None else str(v.seq), v.problem)
        show(section(f"{len(violations)} violation(s)", view) if violations else "no violations")
    if violations:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
    app.command("verify")(verify)
