"""The CLI's one output layer: rich tables, ``--json``, and the one-line ``error:`` convention.

Every command prints through these helpers, so tables look alike, ``--json``
dumps the same models the tables show, and every failure is one ``error:`` line
on stderr (usage errors included) with no traceback.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from fleet.errors import BadArgument

console = Console()
err_console = Console(stderr=True)

JSON_HELP = "print JSON instead of tables"


def json_option() -> Any:
    """The ``--json`` flag every read command takes."""
    return typer.Option(False, "--json", help=JSON_HELP)


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


def show(renderable: RenderableType) -> None:
    """Print a table or a group of them."""
    console.print(renderable)


def add(view: Table, *cells: object) -> None:
    """Add a row of plain text cells (never read as rich markup)."""
    view.add_row(*(Text(str(cell)) for cell in cells))


def table(*columns: str) -> Table:
    return Table(*columns, show_edge=False)


def section(title: str, body: RenderableType | None = None) -> RenderableType:
    """A bold heading line above ``body`` (table titles would wrap to the table's width)."""
    head = Text(title, style="bold")
    return head if body is None else Group(head, body)


def plural(n: int, noun: str) -> str:
    """``3 bet(s)``: a count and a noun the pipeline may name."""
    return f"{n} {noun}(s)"


def at_least_one(name: str, value: float) -> None:
    if value < 1:
        raise BadArgument(f"{name} must be at least 1, got {value:g}")


def at_most(name: str, value: int, limit: int) -> None:
    if value > limit:
        raise BadArgument(f"{name} must be at most {limit}, got {value}")


def positive(name: str, value: float) -> None:
    if value <= 0:
        raise BadArgument(f"{name} must be more than 0, got {value:g}")


def help_without_command(ctx: typer.Context) -> None:
    """A group called without a command shows its help and exits 2, as typer's usage errors do."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help(), err=True, nl=False)
        raise typer.Exit(2)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    err_console.print(Text.assemble(("error:", "red"), " ", message), highlight=False, soft_wrap=True)
    sys.exit(code)
