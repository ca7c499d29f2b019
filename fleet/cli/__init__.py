"""The ``fleet`` command line (typer + rich): local services, and the operator's questions.

One module per command group, each registering its commands on :data:`app`:

| module | commands |
|---|---|
| :mod:`~fleet.cli.services` | ``fleet services install/up/down/status`` |
| :mod:`~fleet.cli.run` | ``fleet trigger``, ``fleet up``, ``fleet demo`` |
| :mod:`~fleet.cli.ledger` | ``fleet status``, ``fleet bets``, ``fleet bet``, ``fleet seed`` |
| :mod:`~fleet.cli.definitions` | ``fleet agents``, ``fleet schedule``, ``fleet pipeline`` |
| :mod:`~fleet.cli.board` | ``fleet board``, ``fleet board close`` |
| :mod:`~fleet.cli.audits` | ``fleet audit``, ``fleet verify`` |
| :mod:`~fleet.cli.retention` | ``fleet prune`` |
| :mod:`~fleet.cli.upkeep` | ``fleet migrate``, ``fleet tally`` |
| :mod:`~fleet.cli.doctor` | ``fleet doctor`` |
| :mod:`~fleet.cli.external` | ``fleet mcp``, ``fleet token`` (external agents) |
| :mod:`fleet.web.command` | ``fleet web`` (the console; its logic lives in :mod:`fleet.web`) |

A new group (``mcp``, ``token``, ``web``...) is one more module with a
``register(app)`` function or a sub-``Typer``, added below. Commands parse
arguments and format answers through :mod:`fleet.cli.output`; the questions
they ask live in :mod:`fleet.queries` and :mod:`fleet.ops.doctor`.

Every error an operator can cause or meet is one ``error:`` line on stderr and
a non-zero exit code, never a traceback: a :class:`FleetError` (or a store or
broker failure no module translated) exits 1, a usage error exits 2.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
import typer
from kombu.exceptions import OperationalError as KombuOperationalError
from pymongo.errors import PyMongoError

from fleet.cli import audits, board, definitions, doctor, external, ledger, retention, run, services, upkeep
from fleet.cli.output import fail, help_without_command
from fleet.errors import FleetError, first_line
from fleet.web.command import web as web_command

app = typer.Typer(
    add_completion=False,
    help="Operate the fleet: local services, status, the ledger, agents, the schedule, the board, audits.",
)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """Without a command: the help, and the usage exit code."""
    help_without_command(ctx)


ledger.register(app)
run.register(app)
definitions.register(app)
audits.register(app)
retention.register(app)
upkeep.register(app)
doctor.register(app)
external.register(app)
app.add_typer(services.app, name="services")
app.add_typer(board.app, name="board")
app.command("web")(web_command)

#: Exit code of a command line typer cannot parse (click's own convention).
USAGE_EXIT = 2


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: run the app; every failure is one ``error:`` line (exit 1, usage errors 2)."""
    try:
        code = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except typer.TyperException as exc:  # typer's own parse errors: usage errors exit 2
        fail(_usage_line(exc), exc.exit_code)
    except typer.Abort:
        fail("aborted")
    except FleetError as exc:
        fail(str(exc))
    except (PyMongoError, redis.RedisError, KombuOperationalError) as exc:
        # A store or broker failure no fleet module translated: still one line, never a traceback.
        fail(f"{type(exc).__name__}: {first_line(exc)[:200]}")
    raise SystemExit(code if isinstance(code, int) else 0)


def _usage_line(exc: typer.TyperException) -> str:
    """Typer's usage error as one line: the problem, then where the command's help is."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)  # usage errors carry the context of the command they are about
    return message if ctx is None else f"{message} (see `{ctx.command_path} --help`)"


__all__ = ["app", "main"]
