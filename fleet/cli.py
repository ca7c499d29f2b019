"""The ``fleet`` command line (typer + rich): services, and the operator's questions.

Every error an operator can cause or meet is a :class:`FleetError`; ``main``
prints it as one line and exits non-zero, never with a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from fleet import services as svc
from fleet.errors import FleetError
from fleet.settings import LOCAL_MONGO_PORT, LOCAL_REDIS_PORT, Settings, get_settings, mask_url

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
services_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Local Redis and FerretDB."
)
app.add_typer(services_app, name="services")

console = Console()
err_console = Console(stderr=True)


def local_services(settings: Settings) -> list[svc.Service]:
    """The services this project starts itself: only those whose URL was not given."""
    wanted = {"redis": settings.local_redis, "ferretdb": settings.local_mongo}
    every = svc.local_services(settings.home, LOCAL_REDIS_PORT, LOCAL_MONGO_PORT)
    return [s for s in every if wanted[s.name]]


def emit(data: Any, as_json: bool) -> bool:
    """Print ``data`` as JSON when asked; return True if it was printed."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    return as_json


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
    started = svc.up(local_services(settings))
    for name, pid in started.items():
        console.print(f"{name}: running (pid {pid})")
    _print_urls(settings)


@services_app.command("down")
def services_down() -> None:
    """Stop the local services started by ``fleet services up``."""
    for name, was_running in svc.down(local_services(get_settings())).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@services_app.command("status")
def services_status(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show which local services run, and the URLs fleet uses."""
    settings = get_settings()
    rows = [
        {"service": s.name, "port": s.port, "pid": svc.running_pid(s), "log": str(s.log_file)}
        for s in local_services(settings)
    ]
    if emit({"local": rows, "mongo_url": mask_url(settings.mongo_url),
             "broker_url": mask_url(settings.broker_url)}, as_json):  # fmt: skip
        return
    table = Table("service", "port", "state", "log")
    for row in rows:
        table.add_row(row["service"], str(row["port"]),
                      f"running (pid {row['pid']})" if row["pid"] else "stopped", row["log"])  # fmt: skip
    console.print(table)
    _print_urls(settings)


def _print_urls(settings: Settings) -> None:
    console.print(
        f"FLEET_MONGO_URL={mask_url(settings.mongo_url)}  FLEET_MONGO_DB={settings.mongo_db}"
    )
    console.print(f"FLEET_BROKER_URL={mask_url(settings.broker_url)}")


def main() -> None:
    """Entry point: run the app, turning every FleetError into one line and exit code 1."""
    try:
        app()  # standalone: typer itself prints usage errors as one message, exit 2
    except FleetError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


@app.command("demo")
def demo() -> None:
    """Start the local stack, run real workers, show the result, and stop everything."""
    from fleet.demo import main as demo_main

    raise typer.Exit(demo_main())
