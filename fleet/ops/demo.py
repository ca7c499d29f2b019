"""``fleet demo``: the whole fleet live in the terminal, in compressed time, then a summary.

It starts what it needs (the local Redis and FerretDB unless ``FLEET_*_URL``
point elsewhere, Celery beat, two workers covering every queue, Flower and the
web console), seeds
bets, shows the pipeline moving, and stops everything it started, on its own
after ``--minutes`` or on Ctrl-C. It uses its own database (``<db>_demo``) and
drops it first, so a demo never touches real ledger data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from pymongo.database import Database
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from fleet import audit, queries
from fleet.app.routing import queue_names
from fleet.app.schedule import load_report, peak_running
from fleet.constants import HEARTBEATS, REFUSALS, TRANSITIONS
from fleet.definitions.catalogue import Registry, get_registry
from fleet.definitions.pipeline import fill_seed_fields
from fleet.definitions.protocols import load_protocols
from fleet.errors import TransitionRefused
from fleet.ledger import Enforcer
from fleet.logs import format_actions
from fleet.ops import services as svc
from fleet.runtime import wake
from fleet.runtime.handoff import handoffs
from fleet.settings import DEMO_PASSWORD, Settings, get_settings, mask_url
from fleet.store import Document, database, ensure_indexes, ping_mongo, ping_redis, redis_client

console = Console()

#: Processes of the two demo workers: one for the pipeline's queues, one for every other queue.
DEMO_CONCURRENCY = {"pipeline": 3, "support": 2}


def demo_workers(registry: Registry) -> dict[str, tuple[str, int]]:
    """Two workers cover the whole fleet on a laptop: the queues of agents that move or create
    items, and the rest (with ``ops``), each as ``(comma-separated queues, processes)``."""
    movers = registry.pipeline.owners()
    pipeline = sorted({spec.queue for spec in registry if spec.name in movers})
    support = [q for q in queue_names(registry) if q not in pipeline]
    groups = {"pipeline": pipeline, "support": support}
    return {name: (",".join(queues), DEMO_CONCURRENCY[name]) for name, queues in groups.items() if queues}


@dataclass(frozen=True)
class DemoOptions:
    """How long the demo runs and how it is set up."""

    minutes: float = 3.0
    day_seconds: float = 120.0
    bets: int = 12
    failure_rate: float = 0.1
    refresh_s: float = 1.0


#: Flower's options file (credentials from the environment), at the repository's top level.
FLOWER_CONFIG = Path(__file__).resolve().parents[1] / "flowerconfig.py"


def flower_password(settings: Settings) -> str:
    """The operator's Flower password, or the demo's own (Flower warns when it is used)."""
    return settings.flower_password or DEMO_PASSWORD


@contextmanager
def local_stack(settings: Settings) -> Iterator[None]:
    """Start the local services these settings ask for; stop only what this call started."""
    mine = [s for s in svc.for_settings(settings) if svc.running_pid(s) is None]
    svc.up(mine)
    try:
        yield
    finally:
        svc.down(mine)


@contextmanager
def celery_process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``celery -A fleet <args>`` in its own process group; stop it (TERM, then KILL) on exit."""
    with python_process(["-m", "celery", "-A", "fleet", *args], log, env) as proc:
        yield proc


@contextmanager
def python_process(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python <args>`` in its own process group; stop it (TERM, then KILL) on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **env},
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            # TERM to the main process only: a worker's warm shutdown lets running heartbeats
            # finish; TERM to the whole group would kill its pool children mid-commit.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def demo_env(settings: Settings, options: DemoOptions) -> dict[str, str]:
    """Environment for the demo's Celery processes (same stores, compressed day)."""
    return {
        "FLEET_MONGO_URL": settings.mongo_url,
        "FLEET_BROKER_URL": settings.broker_url,
        "FLEET_MONGO_DB": settings.mongo_db,
        "FLEET_DAY_SECONDS": str(options.day_seconds),
        "FLEET_SIM_FAILURE_RATE": str(options.failure_rate),
        "FLEET_PROTOCOLS_DIR": str(settings.protocols_dir.resolve()),
    }


def reset_database(db: Database[Document]) -> None:
    for name in db.list_collection_names():
        db.drop_collection(name)
    ensure_indexes(db)


def seed(enforcer: Enforcer, registry: Registry, n: int) -> None:
    """Create ``n`` items through the pipeline's creators, round robin, with its seed fields."""
    creators = registry.pipeline.creators
    for i in range(n):
        creator = creators[i % len(creators)]
        enforcer.create_bet(creator, fill_seed_fields(registry.pipeline.seed_fields, i + 1))


def show_a_refusal(enforcer: Enforcer, registry: Registry) -> str:
    """Try a move the handoff map forbids, as a rogue agent would; the enforcer refuses it."""
    pipeline = registry.pipeline
    bet = next(b for b in enforcer.bets_at([pipeline.initial_stage], 1) if not isinstance(b, Exception))
    rogue = pipeline.creators[0]
    target = next(s.name for s in pipeline.stages if s.terminal)
    try:
        enforcer.advance(bet.bet_id, target, rogue, bet.seq, verdict="skip the gates")
    except TransitionRefused as exc:
        return str(exc)
    raise AssertionError("the enforcer accepted a move it must refuse")


# --- what the terminal shows -----------------------------------------------------


def stage_counts(db: Database[Document], registry: Registry) -> dict[str, int]:
    return {row.stage: row.count for row in queries.bets_per_stage(db, registry.pipeline)}


def totals(db: Database[Document]) -> dict[str, int]:
    retries = 0
    for doc in db[HEARTBEATS].find({}, {"actions": 1}):
        actions = doc.get("actions")
        if isinstance(actions, dict):
            retries += int(actions.get("retries", 0))
    return {
        "transitions": db[TRANSITIONS].count_documents({"seq": {"$gt": 0}}),
        "created": db[TRANSITIONS].count_documents({"seq": 0}),
        "refused": db[REFUSALS].count_documents({}),
        "heartbeats": db[HEARTBEATS].count_documents({}),
        "retries": retries,
        "peak": queries.peak_concurrency(db).peak,
    }


def _latest_heartbeats(db: Database[Document], limit: int) -> list[queries.HeartbeatSummary]:
    docs = db[HEARTBEATS].find({}, {"bets": 0, "trace": 0}).sort("finished_at", -1).limit(limit)
    return [queries.heartbeat_summary(doc) for doc in docs]


def _stage_table(db: Database[Document], registry: Registry) -> Table:
    noun = registry.pipeline.noun
    table = Table("stage", f"{noun}s", title=f"{noun}s per stage", min_width=30)
    for stage, n in stage_counts(db, registry).items():
        table.add_row(stage, str(n))
    return table


def fleet_hour(day_seconds: float) -> float:
    """The hour of the (compressed) fleet day right now, as the beat schedule sees it."""
    return time.time() % day_seconds / day_seconds * 24


def render(db: Database[Document], registry: Registry, started: float, options: DemoOptions) -> Group:
    beats = Table("time", "agent", "status", "actions", title="Latest heartbeats", min_width=70)
    for beat in _latest_heartbeats(db, 12):
        stamp = beat.finished_at.strftime("%H:%M:%S") if beat.finished_at else "-"
        beats.add_row(stamp, beat.agent, str(beat.status), format_actions(beat.actions))
    elapsed = time.monotonic() - started
    t = totals(db)
    head = (
        f"elapsed {elapsed:4.0f}s of {options.minutes * 60:.0f}s | one day = {options.day_seconds:g}s"
        f" | fleet time {fleet_hour(options.day_seconds):04.1f}h | transitions {t['transitions']}"
        f" | refused {t['refused']} | retries {t['retries']} | heartbeats {t['heartbeats']}"
        f" | peak running {t['peak']}"
    )
    return Group(Panel(head), _stage_table(db, registry), beats)


def summary(db: Database[Document], registry: Registry, settings: Settings, refusal: str) -> Group:
    agents = Table("agent", "heartbeats", "last actions", title="Heartbeats per agent")
    for row in queries.heartbeats_per_agent(db, registry.names()):
        agents.add_row(row.agent, str(row.count), format_actions(row.last.actions) if row.last else "-")
    t = totals(db)
    computed = load_report(registry)
    naive = peak_running(load_report(registry, naive=True))
    lines = [
        f"transitions {t['transitions']} ({registry.pipeline.noun}s created {t['created']}),"
        f" refused transitions {t['refused']}, external-call retries {t['retries']},"
        f" heartbeats {t['heartbeats']}",
        f"peak concurrent heartbeats: observed {t['peak']}; computed for the schedule"
        f" {peak_running(computed)} (naive fixed intervals: {naive})",
        f"computed peak per hour: {' '.join(f'{h.hour:02d}h={h.peak_running}' for h in computed)}",
        f"the enforcer refused a rogue move: {refusal}",
        *_audit_lines(db, registry, settings),
        f"Flower was at http://127.0.0.1:{settings.flower_port} (user {settings.flower_user}"
        f"{', demo password' if settings.flower_password is None else ''}),"
        f" the web console at {settings.web_url} (user {settings.web_user})",
    ]
    return Group(
        _stage_table(db, registry), agents, _handoff_table(db), Panel("\n".join(lines), title="Summary")
    )


def _handoff_table(db: Database[Document]) -> Table:
    """Handoff latency per stage over the whole demo, next to the peak in the summary."""
    view = Table(
        "stage", "agent", "bets", "median s", "p95 s", "max s", title="Handoff latency (arrival -> pickup)"
    )
    for row in handoffs(db, datetime(1970, 1, 1, tzinfo=UTC)):
        view.add_row(
            row.stage, row.agent, str(row.bets), f"{row.median_s:.2f}", f"{row.p95_s:.2f}", f"{row.max_s:.2f}"
        )
    return view


def _audit_lines(db: Database[Document], registry: Registry, settings: Settings) -> list[str]:
    loaded = load_protocols(settings.protocols_dir)
    now = datetime.now(UTC)
    drift = audit.drift_findings(registry, loaded, db, now)
    stranded = audit.stranded_findings(registry, loaded, db, now)
    open_tasks = db["tasks"].count_documents({"status": "open"})
    noun = registry.pipeline.noun
    return [f"drift findings {len(drift)}, stranded {noun}s {len(stranded)}, open board tasks {open_tasks}"]


# --- orchestration ----------------------------------------------------------------


def run_demo(options: DemoOptions) -> int:
    """Run the demo; returns the process exit code."""
    base = get_settings()
    settings = base.model_copy(update={"mongo_db": f"{base.mongo_db}_demo"})
    registry = get_registry()
    logs = Path(tempfile.mkdtemp(prefix="fleet-demo-"))
    with ExitStack() as stack:
        stack.enter_context(local_stack(settings))
        console.print(
            f"redis {ping_redis(settings)} at {mask_url(settings.broker_url)}, MongoDB-wire store"
            f" {ping_mongo(settings)} at {mask_url(settings.mongo_url)}"
        )
        db = database(settings)
        reset_database(db)
        enforcer = Enforcer(db, registry.pipeline)
        # Runs after every process below has stopped: a worker killed between a commit's two
        # writes leaves a lagging projection, which the watchdog would roll forward; so do we.
        stack.callback(enforcer.repair_all)
        seed(enforcer, registry, options.bets)
        refusal = show_a_refusal(enforcer, registry)
        _start_processes(stack, settings, options, logs)
        _wake_first_gates(settings, registry)
        _watch(db, registry, options)
        console.print(summary(db, registry, settings, refusal))
        console.print(f"logs: {logs}")
    return 0


def _start_processes(stack: ExitStack, settings: Settings, options: DemoOptions, logs: Path) -> None:
    env = demo_env(settings, options)
    workers = demo_workers(get_registry())
    for name, (queues, concurrency) in workers.items():
        args = ["worker", "-Q", queues, "-c", str(concurrency), "-n", f"{name}@%h", "-l", "INFO"]
        stack.enter_context(celery_process(args, logs / f"{name}.log", env))
    beat = ["beat", "-s", str(logs / "celerybeat-schedule"), "-l", "INFO"]
    stack.enter_context(celery_process(beat, logs / "beat.log", env))
    flower = ["flower", "--address=127.0.0.1", f"--port={settings.flower_port}", f"--conf={FLOWER_CONFIG}"]
    # The credentials travel in the environment: a password on argv is visible in ``ps``.
    secrets = {"FLEET_FLOWER_USER": settings.flower_user, "FLEET_FLOWER_PASSWORD": flower_password(settings)}
    stack.enter_context(celery_process(flower, logs / "flower.log", {**env, **secrets}))
    # The console reads its password from the environment it inherits, never from its arguments.
    stack.enter_context(python_process(["-m", "fleet.web"], logs / "web.log", env))
    console.print(
        f"started beat, {len(workers)} workers, Flower ({settings.flower_url}) and the web console"
        f" ({settings.web_url}, user {settings.web_user}); logs in {logs}"
    )


@dataclass
class _Waker:
    registry: Registry
    settings: Settings
    redis: redis.Redis


def _wake_first_gates(settings: Settings, registry: Registry) -> None:
    """The seeded bets arrived before any worker ran: wake the agents polling the first stage."""
    with closing(redis_client(settings.broker_url)) as client:
        wake.on_arrival(_Waker(registry, settings, client), registry.pipeline.initial_stage)


def _watch(db: Database[Document], registry: Registry, options: DemoOptions) -> None:
    started = time.monotonic()
    deadline = started + options.minutes * 60
    try:
        with Live(render(db, registry, started, options), console=console, refresh_per_second=2) as live:
            while time.monotonic() < deadline:
                time.sleep(options.refresh_s)  # the refresh period of the live view
                live.update(render(db, registry, started, options))
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything the demo started")


def main(**overrides: Any) -> int:
    return run_demo(DemoOptions(**overrides))
