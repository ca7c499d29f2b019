"""``fleet board`` (open tasks, or every task) and ``fleet board close ID --reason``."""

from __future__ import annotations

import typer

from fleet import queries
from fleet.cli.common import connect
from fleet.cli.output import add, at_least_one, emit, json_option, say, section, show, table, when
from fleet.constants import OPERATOR
from fleet.errors import BadArgument

app = typer.Typer(add_completion=False, help="The task board: open tasks; `board close` closes one.")


@app.callback(invoke_without_command=True)
def board(
    ctx: typer.Context,
    show_all: bool = typer.Option(False, "--all", help="closed tasks too, newest first"),
    limit: int = typer.Option(50, "--limit", help="how many tasks to list"),
    as_json: bool = json_option(),
) -> None:
    """List open board tasks (oldest first), or with --all every task (newest first)."""
    if ctx.invoked_subcommand is not None:
        return
    at_least_one("--limit", limit)
    ops = connect()
    tasks = queries.board_tasks(ops.db, ops.board, show_all, limit)
    if emit(tasks, as_json):
        return
    if not tasks:
        say(f"no tasks{'' if show_all else ' open'}")
        return
    view = table("task", "status", "assignee", "origin", "title", "updated")
    for task in tasks:
        add(view, task.task_id, task.status, task.assignee, task.origin, task.title, when(task.updated_at))
    show(section(f"{len(tasks)} task(s)" if show_all else f"{len(tasks)} open task(s)", view))


@app.command("close")
def close(
    task_id: str = typer.Argument(..., help="the task's id (see `fleet board`)"),
    reason: str = typer.Option(..., "--reason", help="why it is closed (kept in its history)"),
    as_json: bool = json_option(),
) -> None:
    """Close one board task for good, as the operator."""
    if not reason.strip():
        raise BadArgument("--reason must not be empty")
    task = connect().board.close(task_id, by=OPERATOR, reason=reason)
    if not emit(task, as_json):
        say(f"closed {task.task_id}: {task.title}")
