"""``fleet doctor``: print each check of :mod:`fleet.ops.doctor` as one line, with its fix when it failed."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from fleet.cli.common import PROCFILE_OPTION
from fleet.cli.output import emit, json_option, say
from fleet.ops.doctor import Check, doctor_checks, probe_check
from fleet.settings import get_settings


def doctor(
    procfile: Path = PROCFILE_OPTION,
    probe: bool = typer.Option(False, "--probe", help="also send a probe through a worker on the ops queue"),
    timeout: float = typer.Option(15.0, "--timeout", help="seconds to wait for the probe"),
    as_json: bool = json_option(),
) -> None:
    """Check settings, Redis, the store, protocols, pipeline, catalogue, handlers and the Procfile."""
    checks = doctor_checks(procfile)
    if probe and all(c.ok for c in checks):
        checks.append(probe_check(get_settings(), timeout))
    ok = all(c.ok for c in checks)
    if not emit({"ok": ok, "checks": checks}, as_json):
        for c in checks:
            say(check_line(c))
    if not ok:
        raise typer.Exit(1)


def check_line(c: Check) -> Text:
    mark = Text("ok  ", style="green") if c.ok else Text("FAIL", style="red")
    fix = f"\n      fix: {c.fix}" if not c.ok and c.fix else ""
    return Text.assemble(mark, f" {c.name}: {c.detail}{fix}")


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
