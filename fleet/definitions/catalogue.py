"""Agent specs as data, and the registry built from them and the pipeline.

An :class:`AgentSpec` says everything the runtime needs about one agent: its
queue, schedule, the stages it polls, the transitions it owns, limits, the
protocol version it was written for and the import path of its handler. The
catalogue is checked against the pipeline when loaded: every edge is owned by
exactly one agent, and every edge an agent claims exists and is its own.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from contextlib import suppress
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fleet.constants import DEFAULT_SPEC_OWNER, STOP_GRACE_S
from fleet.definitions.pipeline import NAME_PATTERN, Pipeline, load_object, load_pipeline
from fleet.errors import CatalogueError, UnknownAgent
from fleet.settings import get_settings

DEFAULT_CATALOGUE = "fleet.defaults.catalogue:CATALOGUE"


class CommandHandler(BaseModel):
    """``{"command": [...]}``: run a program per claimed bet (or per heartbeat)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[str, ...] = Field(min_length=1)
    timeout_s: float | None = Field(default=None, gt=0, le=3600, description="default: half the time limit")
    cwd: str | None = None


class WebhookHandler(BaseModel):
    """``{"webhook": URL}``: POST the payload per claimed bet, get a JSON decision back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="per attempt")


class Schedule(BaseModel):
    """When beat starts the agent: UTC hours of the day at a base minute.

    ``beat_schedule`` adds a deterministic per-agent offset to ``minute`` so
    agents of one group do not start in the same minute.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: tuple[int, ...] = Field(min_length=1)
    minute: int = Field(default=0, ge=0, le=59)

    @field_validator("hours")
    @classmethod
    def _hours_in_day(cls, hours: tuple[int, ...]) -> tuple[int, ...]:
        bad = [h for h in hours if not 0 <= h <= 23]
        if bad:
            raise ValueError(f"hours must be 0-23, got {bad}")
        return tuple(sorted(set(hours)))


class AgentSpec(BaseModel):
    """One agent: what it polls, what it may move, when it runs, and its handler."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    role: str = ""
    group: str = Field(pattern=NAME_PATTERN)
    queue: str = Field(pattern=NAME_PATTERN)
    schedule: Schedule
    polls: tuple[str, ...] = ()
    owns: tuple[tuple[str, str], ...] = ()
    creates: bool = False
    batch_size: int = Field(default=10, ge=1, le=1000)
    time_limit: int = Field(default=600, ge=1, le=3600, description="hard limit, seconds")
    expected_seconds: float = Field(default=60.0, gt=0, description="typical duration")
    protocol_version: str
    #: ``"module:function"`` (Python, in the worker), ``{"command": [...]}`` or ``{"webhook": URL}``
    #: (external agents, see fleet.agents.external).
    handler: Annotated[str, Field(pattern=r"^[\w.]+:\w+$")] | CommandHandler | WebhookHandler
    #: Instructions file (markdown + front matter), relative to FLEET_INSTRUCTIONS_DIR.
    instructions: str | None = Field(default=None, min_length=1)
    #: Who answers for this spec: refusal-loop tasks about the agent are assigned to them.
    owner: str = Field(default=DEFAULT_SPEC_OWNER, pattern=NAME_PATTERN)
    #: Run an extra heartbeat when a bet arrives at a stage it polls (see fleet.runtime.wake).
    wake: bool = True
    #: Bets of this agent that may run at once fleet-wide as their own ``fleet.bet`` tasks
    #: (external rate limits); 0 keeps every batch in-process. See fleet.runtime.fanout for the rule.
    fan_out: int = Field(default=0, ge=0, le=1000)

    @property
    def time_limits(self) -> tuple[float, float]:
        """Celery's (soft, hard) limits for one heartbeat: the hard one is ``time_limit``."""
        grace = min(STOP_GRACE_S, self.time_limit / 5)
        return self.time_limit - grace, float(self.time_limit)

    @property
    def per_bet(self) -> bool:
        """True when the handler decides bet by bet (the agent polls stages)."""
        return bool(self.polls)


class Catalogue(BaseModel):
    """Every agent of a fleet and the queues they are served from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queues: tuple[str, ...] = Field(min_length=1)
    agents: tuple[AgentSpec, ...] = Field(min_length=1)


class Registry:
    """The agents of this fleet by name, checked against the pipeline."""

    def __init__(self, catalogue: Catalogue, pipeline: Pipeline) -> None:
        self.catalogue = catalogue
        self.pipeline = pipeline
        self._by_name = {spec.name: spec for spec in catalogue.agents}

    def __iter__(self) -> Any:
        return iter(self.catalogue.agents)

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> AgentSpec | None:
        return self._by_name.get(name)

    def require(self, name: str) -> AgentSpec:
        """The spec named ``name`` or :class:`UnknownAgent`."""
        spec = self._by_name.get(name)
        if spec is None:
            raise UnknownAgent(name)
        return spec

    def names(self) -> list[str]:
        return list(self._by_name)

    def queues(self) -> list[str]:
        return list(self.catalogue.queues)


def catalogue_problems(catalogue: Catalogue, pipeline: Pipeline) -> list[str]:
    """Every mismatch between the catalogue and the pipeline (empty when valid)."""
    return [
        *_duplicate_names(catalogue.agents),
        *_queue_problems(catalogue),
        *_ownership_problems(catalogue.agents, pipeline),
        *_poll_problems(catalogue.agents, pipeline),
        *_creator_problems(catalogue.agents, pipeline),
    ]


def _duplicate_names(agents: Iterable[AgentSpec]) -> Iterable[str]:
    seen: set[str] = set()
    for spec in agents:
        if spec.name in seen:
            yield f"agent {spec.name!r} is defined twice"
        seen.add(spec.name)


def _queue_problems(catalogue: Catalogue) -> Iterable[str]:
    for spec in catalogue.agents:
        if spec.queue not in catalogue.queues:
            yield f"agent {spec.name!r} uses undeclared queue {spec.queue!r}"


def _ownership_problems(agents: Iterable[AgentSpec], pipeline: Pipeline) -> Iterable[str]:
    claimed: dict[tuple[str, str], str] = {}
    for spec in agents:
        for edge in spec.owns:
            transition = pipeline.edge(*edge)
            if transition is None:
                yield f"agent {spec.name!r} owns {edge[0]} -> {edge[1]}, which the pipeline lacks"
            elif transition.owner != spec.name:
                yield f"agent {spec.name!r} owns {edge[0]} -> {edge[1]}, owned by {transition.owner!r}"
            claimed[edge] = spec.name
    for t in pipeline.transitions:
        if t.edge not in claimed:
            yield f"edge {t.source} -> {t.dest} (owner {t.owner!r}) is not in any agent's spec"


def _poll_problems(agents: Iterable[AgentSpec], pipeline: Pipeline) -> Iterable[str]:
    for spec in agents:
        for stage in spec.polls:
            if stage not in pipeline.stage_map:
                yield f"agent {spec.name!r} polls unknown stage {stage!r}"
            elif pipeline.is_terminal(stage):
                yield f"agent {spec.name!r} polls terminal stage {stage!r}"


def _creator_problems(agents: Iterable[AgentSpec], pipeline: Pipeline) -> Iterable[str]:
    creators = {spec.name for spec in agents if spec.creates}
    for name in sorted(set(pipeline.creators) - creators):
        yield f"pipeline creator {name!r} has no spec with creates=true"
    for name in sorted(creators - set(pipeline.creators)):
        yield f"agent {name!r} has creates=true but is not a pipeline creator"


def validate_catalogue(data: Any, pipeline: Pipeline, source: str) -> Registry:
    """Build and check a catalogue; every problem is reported in one :class:`CatalogueError`."""
    if isinstance(data, Catalogue):
        data = data.model_dump()
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise CatalogueError(source, problems) from None
    problems = catalogue_problems(catalogue, pipeline)
    if problems:
        raise CatalogueError(source, problems)
    return Registry(catalogue, pipeline)


def load_registry(catalogue_ref: str | None, pipeline_ref: str | None) -> Registry:
    """Load and cross-check the catalogue and the pipeline named by the settings."""
    pipeline = load_pipeline(pipeline_ref)
    ref = catalogue_ref or DEFAULT_CATALOGUE
    return validate_catalogue(load_object(ref, CatalogueError), pipeline, ref)


@cache
def get_registry() -> Registry:
    """The process-wide registry, from ``FLEET_CATALOGUE`` and ``FLEET_PIPELINE``."""
    settings = get_settings()
    return load_registry(settings.catalogue, settings.pipeline)


def spec_fingerprint(spec: AgentSpec) -> str:
    """A hash of the spec and of its handler's source file: what a fix would change.

    Holds on bets (:mod:`fleet.ledger.holds`) last until this changes, so editing the
    spec or deploying a fixed handler offers the held bets to the agent again.
    """
    digest = hashlib.sha256(spec.model_dump_json().encode())
    for source in _handler_sources(spec):
        with suppress(OSError):
            digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


def _handler_sources(spec: AgentSpec) -> list[str]:
    """Files whose change is a new handler: the Python module, or a command's program files."""
    if isinstance(spec.handler, CommandHandler):
        return [arg for arg in spec.handler.command if Path(arg).is_file()]
    if isinstance(spec.handler, WebhookHandler):
        return []  # the service is deployed elsewhere: only the spec can tell a fix
    source = getattr(sys.modules.get(spec.handler.partition(":")[0]), "__file__", None)
    return [source] if source else []
