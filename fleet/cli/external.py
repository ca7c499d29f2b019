"""``fleet mcp`` and ``fleet token``: external agents' door (the logic lives in :mod:`fleet.mcp`)."""

from __future__ import annotations

import os
from typing import Any

import typer

from fleet.definitions.catalogue import get_registry
from fleet.settings import get_settings

#: ``fleet token --bet`` (a module-level default: a list is not immutable).
TOKEN_BETS_OPTION: Any = typer.Option([], "--bet", help="limit the token to this bet (repeatable)")


def mcp_server(
    stdio: bool = typer.Option(False, "--stdio", help="serve one local agent over stdio (FLEET_MCP_TOKEN)"),
    port: int | None = typer.Option(None, "--port", help="HTTP port (default FLEET_MCP_PORT)"),
) -> None:
    """Serve the ledger and the board as MCP tools to external agents (streamable HTTP at /mcp)."""
    from fleet.mcp.server import serve  # lazy: the MCP SDK's import is slow

    settings = get_settings()
    if port is not None:
        settings = settings.model_copy(update={"mcp_port": port})
    serve(settings, "stdio" if stdio else "http", os.environ.get("FLEET_MCP_TOKEN"))


def token(
    agent: str = typer.Argument(..., help="the agent the token acts as"),
    ttl: float = typer.Option(3600.0, "--ttl", help="lifetime in seconds (at most a day)"),
    bets: list[str] = TOKEN_BETS_OPTION,
) -> None:
    """Print a signed bearer token for AGENT, for an MCP client (`Authorization: Bearer ...`)."""
    from fleet.mcp.tokens import mint

    get_registry().require(agent)
    typer.echo(mint(get_settings(), agent, ttl, bets=bets or None))


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp_server)
    app.command("token")(token)
