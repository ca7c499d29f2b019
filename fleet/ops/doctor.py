"""``fleet doctor``'s checks: each a small function naming what it checked, its verdict and the fix.

Checks run in order and a check whose input failed is skipped (no pipeline, no
catalogue check). A check never raises for what it finds: a :class:`FleetError`
becomes a failed :class:`Check` naming what to fix.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from fleet.agents.handlers import resolve_handler
from fleet.app.routing import queue_names
from fleet.constants import PROBE_TASK, PROBES
from fleet.definitions.catalogue import CommandHandler, Registry, WebhookHandler, load_registry
from fleet.definitions.pipeline import Pipeline, load_pipeline
from fleet.definitions.protocols import LoadedProtocols, load_protocols
from fleet.errors import FleetError
from fleet.ops.procfile import procfile_queues
from fleet.settings import Settings, load_settings

T = TypeVar("T")


class Check(BaseModel):
    """One doctor check: what was checked, whether it passed, what was found, how to fix it."""

    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _attempt(name: str, fix: str, probe: Callable[[], tuple[T, str]]) -> tuple[Check, T | None]:
    """Run one check; a FleetError is a failed check naming what to fix."""
    try:
        value, detail = probe()
    except FleetError as exc:
        return Check(name=name, ok=False, detail=str(exc), fix=fix), None
    return Check(name=name, ok=True, detail=detail), value


def doctor_checks(procfile: Path) -> list[Check]:
    """Every check ``fleet doctor`` runs, in order; later checks are skipped when their input failed."""
    check, settings = settings_check()
    if settings is None:
        return [check]
    services = [redis_check(settings), store_check(settings), protocols_check(settings)]
    definitions = _definition_checks(settings, procfile)
    layout = [layout_check(settings)] if services[1].ok and all(c.ok for c in definitions[:1]) else []
    return [check, *services, *definitions, *layout]


def _definition_checks(settings: Settings, procfile: Path) -> list[Check]:
    checked, pipeline = pipeline_check(settings)
    if pipeline is None:
        return [checked]
    catalogue, registry = catalogue_check(settings)
    if registry is None:
        return [checked, catalogue]
    checks = [checked, catalogue, handlers_check(registry), procfile_check(registry, procfile)]
    return checks + mcp_checks(settings, registry)


def mcp_checks(settings: Settings, registry: Registry) -> list[Check]:
    """With external agents in the catalogue: ``fleet mcp`` answers and accepts their tokens."""
    external = [spec.name for spec in registry if isinstance(spec.handler, CommandHandler | WebhookHandler)]
    if not external:
        return []

    def probe() -> tuple[None, str]:
        from fleet.mcp.client import check  # lazy: the MCP SDK's import is slow; only external agents need it
        from fleet.mcp.tokens import mint

        agent = check(settings.mcp_endpoint, mint(settings, external[0], 60))["agent"]
        return (
            None,
            f"{settings.mcp_endpoint} answers and accepts {agent}'s token ({len(external)} external agents)",
        )

    fix = "start `fleet mcp` (a Procfile line) and give workers and server the same FLEET_MCP_SECRET"
    return [_attempt("mcp", fix, probe)[0]]


def layout_check(settings: Settings) -> Check:
    """Finished bets are out of the live set (a store written by an older fleet has them in it)."""
    from fleet.ledger.ledger import Ledger  # lazy: as in redis_check
    from fleet.store import database

    def probe() -> tuple[None, str]:
        terminal = frozenset(load_pipeline(settings.pipeline).terminal_stages)
        left = Ledger(database(settings), terminal=terminal).unmigrated()
        if left:
            raise FleetError(f"{left} finished item(s) still in the live set (a store from an older fleet)")
        return None, "finished items are out of the live set"

    fix = "run `fleet migrate` (the ops watchdog also moves them on its next run)"
    return _attempt("store layout", fix, probe)[0]


def settings_check() -> tuple[Check, Settings | None]:
    """Every ``FLEET_*`` variable parses."""
    fix = "fix the FLEET_* variable named (see fleet/settings.py)"
    return _attempt("settings", fix, lambda: (load_settings(), "every FLEET_* variable parses"))


def redis_check(settings: Settings) -> Check:
    """The broker (Redis) answers."""
    from fleet.store import ping_redis  # lazy: `celery -A fleet` runs the other checks without store clients

    fix = "start it (fleet services up) or fix FLEET_BROKER_URL"
    check, _ = _attempt("redis", fix, lambda: (None, f"reachable, version {ping_redis(settings)}"))
    return check


def store_check(settings: Settings) -> Check:
    """The MongoDB-wire store answers."""
    from fleet.store import ping_mongo  # lazy: as in redis_check

    fix = "start it (fleet services up) or fix FLEET_MONGO_URL"
    detail = "MongoDB-wire store reachable, version {}"
    check, _ = _attempt("store", fix, lambda: (None, detail.format(ping_mongo(settings))))
    return check


def protocols_check(settings: Settings) -> Check:
    """The protocols file loads and validates."""
    fix = "fix the file named, or point FLEET_PROTOCOLS_DIR at the folder holding fleet.yaml"

    def probe() -> tuple[LoadedProtocols, str]:
        loaded = load_protocols(settings.protocols_dir, max_bytes=settings.protocols_max_bytes)
        return loaded, f"{loaded.path}: version {loaded.version}, hash {loaded.hash}"

    check, _ = _attempt("protocols", fix, probe)
    return check


def pipeline_check(settings: Settings) -> tuple[Check, Pipeline | None]:
    """The pipeline definition loads and validates."""

    def probe() -> tuple[Pipeline, str]:
        pipeline = load_pipeline(settings.pipeline)
        shape = f"{len(pipeline.stages)} stages, {len(pipeline.transitions)} transitions"
        return pipeline, f"{pipeline.name}: {shape}"

    return _attempt("pipeline", "fix the pipeline definition (FLEET_PIPELINE)", probe)


def catalogue_check(settings: Settings) -> tuple[Check, Registry | None]:
    """The agent catalogue loads and owns every edge of the pipeline exactly once."""

    def probe() -> tuple[Registry, str]:
        registry = load_registry(settings.catalogue, settings.pipeline)
        return registry, f"{len(registry)} agents on {len(registry.queues())} queues, every edge owned once"

    fix = "fix the agent catalogue (FLEET_CATALOGUE) so it matches the pipeline"
    return _attempt("catalogue", fix, probe)


def handlers_check(registry: Registry) -> Check:
    """Every agent's handler imports."""
    problems = []
    for spec in registry:
        try:
            resolve_handler(spec)
        except FleetError as exc:
            problems.append(str(exc))
    if problems:
        fix = "fix the handler import paths in the agent specs"
        return Check(name="handlers", ok=False, detail="; ".join(problems), fix=fix)
    return Check(name="handlers", ok=True, detail=f"all {len(registry)} handlers import")


def procfile_check(registry: Registry, procfile: Path) -> Check:
    """Every queue of the fleet is served by a ``celery ... worker -Q`` line of the Procfile."""
    try:
        served = procfile_queues(procfile.read_text())
    except OSError as exc:
        detail = f"cannot read {procfile}: {exc.strerror or exc}"
        return Check(
            name="procfile", ok=False, detail=detail, fix="run from the project folder or pass --procfile"
        )
    missing = [q for q in queue_names(registry) if q not in served]
    if missing:
        detail = f"{procfile}: no worker serves {', '.join(missing)}"
        fix = "add a `celery -A fleet worker -Q <queue>` line for each"
        return Check(name="procfile", ok=False, detail=detail, fix=fix)
    return Check(name="procfile", ok=True, detail=f"{procfile}: every queue has a worker")


def probe_check(settings: Settings, timeout: float) -> Check:
    """A worker on the ops queue runs ``fleet.probe`` and writes it back to the store."""
    from fleet.app.dispatch import send  # lazy: as in redis_check
    from fleet.store import database

    token = uuid.uuid4().hex
    send(PROBE_TASK, [token])
    db = database(settings)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = db[PROBES].find_one({"_id": token})
        if doc is not None:
            return Check(name="probe", ok=True, detail=f"worker on {doc.get('host')} answered")
        time.sleep(0.1)  # poll: wait for the worker's write with a deadline
    fix = "start the workers (fleet up, or a `celery -A fleet worker -Q ops` process)"
    return Check(name="probe", ok=False, detail=f"no worker answered within {timeout:g}s", fix=fix)
