"""``fleet web``: serve the console with uvicorn, on loopback unless told otherwise.

The user and password come from settings (``FLEET_WEB_USER``/``FLEET_WEB_PASSWORD``):
there is deliberately no flag for them, so the secret never shows in the process
list. The default password is refused on any address but loopback.
"""

from __future__ import annotations

import ipaddress

import typer

from fleet.errors import WebConsoleError
from fleet.settings import DEMO_PASSWORD, Settings, get_settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> None:
    """Refuse to serve with the default password anywhere but on loopback."""
    if settings.web_password == DEMO_PASSWORD and not is_loopback(settings.web_host):
        raise WebConsoleError(
            f"FLEET_WEB_HOST={settings.web_host} is not loopback:"
            " set FLEET_WEB_PASSWORD to a real secret first"
        )


def web(
    host: str | None = typer.Option(
        None, "--host", help="address to bind (default FLEET_WEB_HOST, 127.0.0.1)"
    ),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="port (default FLEET_WEB_PORT)"),
) -> None:
    """Serve the web console (pipeline, bets, agents, board, schedule, /metrics) until Ctrl-C."""
    import uvicorn

    from fleet.web.app import create_app  # lazy: every other command starts without Starlette

    base = get_settings()
    settings = base.model_copy(update={"web_host": host or base.web_host, "web_port": port or base.web_port})
    check_bind(settings)
    typer.echo(f"fleet web console on {settings.web_url} (user {settings.web_user})")
    uvicorn.run(
        create_app(settings),
        host=settings.web_host,
        port=settings.web_port,
        log_level="warning",
        access_log=False,
    )
