"""Running the fleet: ``fleet up`` (the Procfile), ``fleet demo`` and ``fleet trigger`` (one heartbeat)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from fleet.app.dispatch import send
from fleet.app.flower import check_procfile
from fleet.app.routing import route_task
from fleet.cli.common import PROCFILE_OPTION
from fleet.cli.output import console, emit, json_option, say
from fleet.constants import HEARTBEAT_TASK
from fleet.definitions.catalogue import get_registry
from fleet.errors import BadArgument
from fleet.ops import services as svc
from fleet.settings import get_settings
from fleet.store import ping_mongo, ping_redis


def trigger(
    agent: str = typer.Argument(..., help="the agent to run now"),
    debug: bool = typer.Option(False, "--debug", help="log the heartbeat's decision trace"),
    as_json: bool = json_option(),
) -> None:
    """Send an ad-hoc heartbeat; routing puts it on the agent's queue (like `celery call`)."""
    spec = get_registry().require(agent)
    ping_redis(get_settings())
    kwargs = {"reason": "adhoc", "debug": debug}
    queue = route_task(HEARTBEAT_TASK, [spec.name], kwargs, {})["queue"]
    task_id = send(HEARTBEAT_TASK, [spec.name], kwargs)
    sent = {"task_id": task_id, "agent": spec.name, "queue": queue, **kwargs}
    if not emit(sent, as_json):
        say(f"sent {HEARTBEAT_TASK}({spec.name}, reason=adhoc, debug={debug}): task {task_id}, queue {queue}")


def up(procfile: Path = PROCFILE_OPTION) -> None:
    """Start the local services, then every Procfile process with honcho, until Ctrl-C."""
    settings = get_settings()
    if not procfile.is_file():
        raise BadArgument(f"no Procfile at {procfile}: run from the project folder or pass --procfile")
    check_procfile(procfile, settings)
    for name, pid in svc.up(svc.for_settings(settings)).items():
        console.print(f"{name}: running (pid {pid})")
    ping_redis(settings)
    ping_mongo(settings)
    console.print(
        f"web console: {settings.web_url} (user {settings.web_user}), Flower: {settings.flower_url}"
    )
    code = run_honcho(procfile)
    console.print("the fleet stopped; the services keep running: `fleet services down` stops them")
    raise typer.Exit(code)


def run_honcho(procfile: Path) -> int:
    """Run ``honcho start`` on the Procfile until it ends or Ctrl-C (or SIGTERM); 0 after a stop."""
    cmd = [sys.executable, "-m", "honcho", "start", "-f", str(procfile), "-d", str(procfile.resolve().parent)]
    # Ctrl-C must reach us even when started with SIGINT ignored (a background job); SIGTERM too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    # The Procfile says `celery ...`: put this interpreter's scripts first on PATH, so a fleet
    # started as `.venv/bin/fleet up` runs the same installation without an activated venv.
    scripts = str(Path(sys.executable).parent)
    proc = subprocess.Popen(
        cmd, env={**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    )
    stopping = False
    while True:
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            stopping = True
            proc.send_signal(signal.SIGINT)  # honcho stops every process once, however often asked
            continue
        return 0 if stopping else code


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def demo(
    minutes: float = typer.Option(3.0, min=0.1, max=120, help="how long the demo runs"),
    day_seconds: float = typer.Option(120.0, min=10, help="one schedule day lasts this many seconds"),
    bets: int = typer.Option(12, min=1, max=10000, help="items seeded at the start"),
    failure_rate: float = typer.Option(0.1, min=0, max=1, help="share of simulated calls that fail"),
) -> None:
    """Run the whole fleet live in compressed time (beat, workers, Flower); stop it all after."""
    from fleet.ops.demo import main as demo_main  # lazy: the demo loads the whole fleet

    code = demo_main(minutes=minutes, day_seconds=day_seconds, bets=bets, failure_rate=failure_rate)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("trigger")(trigger)
    app.command("up")(up)
    app.command("demo")(demo)
