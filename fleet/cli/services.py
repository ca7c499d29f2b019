"""``fleet services install|up|down|status``: the local Redis and FerretDB."""

from __future__ import annotations

import typer

from fleet.cli.output import add, console, emit, help_without_command, json_option, table
from fleet.ops import services as svc
from fleet.settings import Settings, get_settings, mask_url

app = typer.Typer(add_completion=False, help="Local Redis and FerretDB.")


@app.callback(invoke_without_command=True)
def _services(ctx: typer.Context) -> None:
    """Without a command: the help, and the usage exit code."""
    help_without_command(ctx)


@app.command("install")
def install(
    browser: bool = typer.Option(False, "--browser", help="also chromium + chromedriver (the browser test)"),
) -> None:
    """Install redis-server (apt-get) and build FerretDB once (cached in FLEET_HOME/bin)."""
    settings = get_settings()
    if browser:
        console.print("chromium, chromedriver: " + ", ".join(map(str, svc.browser_binaries())))
    if settings.local_redis:
        console.print(f"redis-server: {svc.redis_binary()}")
    if settings.local_mongo:
        with console.status("building FerretDB (first run only, about 2 minutes)..."):
            console.print(f"ferretdb: {svc.ferretdb_binary(settings.home / 'bin')}")


@app.command("up")
def up() -> None:
    """Start the local services (those whose FLEET_*_URL is not set) on loopback."""
    settings = get_settings()
    started = svc.up(svc.for_settings(settings))
    for name, pid in started.items():
        console.print(f"{name}: running (pid {pid})")
    print_urls(settings)


@app.command("down")
def down() -> None:
    """Stop the local services started by ``fleet services up``."""
    for name, was_running in svc.down(svc.for_settings(get_settings())).items():
        console.print(f"{name}: {'stopped' if was_running else 'was not running'}")


@app.command("status")
def status(as_json: bool = json_option()) -> None:
    """Show which local services run, and the URLs fleet uses."""
    settings = get_settings()
    rows = [
        {"service": s.name, "port": s.port, "pid": svc.running_pid(s), "log": str(s.log_file)}
        for s in svc.for_settings(settings)
    ]
    urls = {"mongo_url": mask_url(settings.mongo_url), "broker_url": mask_url(settings.broker_url)}
    if emit({"local": rows, **urls}, as_json):
        return
    view = table("service", "port", "state", "log")
    for row in rows:
        state = f"running (pid {row['pid']})" if row["pid"] else "stopped"
        add(view, str(row["service"]), str(row["port"]), state, str(row["log"]))
    console.print(view)
    print_urls(settings)


def print_urls(settings: Settings) -> None:
    console.print(f"FLEET_MONGO_URL={mask_url(settings.mongo_url)}  FLEET_MONGO_DB={settings.mongo_db}")
    console.print(f"FLEET_BROKER_URL={mask_url(settings.broker_url)}")
