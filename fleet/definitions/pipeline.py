"""The pipeline definition: stages and the handoff map, as one declarative table.

A :class:`Pipeline` is data: a list of stages (terminal or not, each with an SLA)
and a list of transitions (from, to, owner agent, kind). It is validated when
loaded; every problem is reported at once in one :class:`PipelineError`. The
enforcer is the only code that acts on it. Nothing in the runtime names a stage
or an agent of the default pipeline: users load their own with ``FLEET_PIPELINE``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet.errors import PipelineError, first_line

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
#: What the ledger's items are called when a pipeline does not name them.
DEFAULT_NOUN = "bet"
#: What ``fleet seed`` writes on each item when the pipeline names no seed fields: neutral words.
DEFAULT_SEED_FIELDS = {"title": "seeded #{n}"}


class Kind(StrEnum):
    """What a transition means; only ``advance`` edges must be acyclic."""

    ADVANCE = "advance"
    KILL = "kill"
    PARK = "park"
    REVIVE = "revive"


class Stage(BaseModel):
    """A pipeline stage; ``sla_hours`` is the longest a bet may wait there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    terminal: bool = False
    sla_hours: float | None = Field(default=None, gt=0)
    description: str = ""


class Transition(BaseModel):
    """One edge of the handoff map, owned by exactly one agent."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str = Field(alias="from")
    dest: str = Field(alias="to")
    owner: str = Field(pattern=NAME_PATTERN)
    kind: Kind = Kind.ADVANCE

    @property
    def edge(self) -> tuple[str, str]:
        return (self.source, self.dest)


class Pipeline(BaseModel):
    """Stages, the handoff map and who may create bets (in ``initial_stage``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "pipeline"
    #: What one item of the ledger is called in operator output ("candidate", "ticket"...).
    noun: str = Field(default=DEFAULT_NOUN, pattern=NAME_PATTERN)
    #: Fields ``fleet seed`` gives each item it creates; ``{n}`` is the item's number.
    seed_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SEED_FIELDS))
    initial_stage: str
    creators: tuple[str, ...] = Field(min_length=1)
    stages: tuple[Stage, ...] = Field(min_length=1)
    transitions: tuple[Transition, ...]

    @cached_property
    def stage_map(self) -> dict[str, Stage]:
        return {stage.name: stage for stage in self.stages}

    @cached_property
    def edge_map(self) -> dict[tuple[str, str], Transition]:
        return {t.edge: t for t in self.transitions}

    def edge(self, source: str, dest: str) -> Transition | None:
        """The transition from ``source`` to ``dest``, or None if the map has none."""
        return self.edge_map.get((source, dest))

    def edges_from(self, stage: str) -> list[Transition]:
        """Every transition leaving ``stage``."""
        return [t for t in self.transitions if t.source == stage]

    def owned_by(self, agent: str) -> list[Transition]:
        """Every transition ``agent`` owns."""
        return [t for t in self.transitions if t.owner == agent]

    def owners(self) -> set[str]:
        """Every agent that owns a transition or may create bets."""
        return {t.owner for t in self.transitions} | set(self.creators)

    def is_terminal(self, stage: str) -> bool:
        return self.stage_map[stage].terminal

    @cached_property
    def terminal_stages(self) -> frozenset[str]:
        """The stages a bet finishes at (its projection leaves the live working set there)."""
        return frozenset(stage.name for stage in self.stages if stage.terminal)

    def problems(self) -> list[str]:
        """Every structural problem of the definition (empty when valid)."""
        return [
            *self._unknown_stages(),
            *self._duplicates(),
            *self._unreachable(),
            *self._terminal_problems(),
            *self._advance_cycles(),
        ]

    def _unknown_stages(self) -> Iterable[str]:
        known = set(self.stage_map)
        if self.initial_stage not in known:
            yield f"initial stage {self.initial_stage!r} is not a stage"
        for t in self.transitions:
            for end in (t.source, t.dest):
                if end not in known:
                    yield f"edge {t.source} -> {t.dest} names unknown stage {end!r}"

    def _duplicates(self) -> Iterable[str]:
        seen_stages: set[str] = set()
        for stage in self.stages:
            if stage.name in seen_stages:
                yield f"stage {stage.name!r} is defined twice"
            seen_stages.add(stage.name)
        owners: dict[tuple[str, str], list[str]] = {}
        for t in self.transitions:
            owners.setdefault(t.edge, []).append(t.owner)
        for (source, dest), names in owners.items():
            if len(names) > 1:
                yield f"edge {source} -> {dest} has {len(names)} owners: {', '.join(names)}"
        for t in self.transitions:
            if t.source == t.dest:
                yield f"edge {t.source} -> {t.dest} goes nowhere"

    def _unreachable(self) -> Iterable[str]:
        reached = {self.initial_stage}
        frontier = [self.initial_stage]
        while frontier:
            name = frontier.pop()
            for t in self.edges_from(name):
                if t.dest not in reached:
                    reached.add(t.dest)
                    frontier.append(t.dest)
        for stage in self.stages:
            if stage.name not in reached:
                yield f"stage {stage.name!r} is not reachable from {self.initial_stage!r}"

    def _terminal_problems(self) -> Iterable[str]:
        terminal = [s.name for s in self.stages if s.terminal]
        if not terminal:
            yield "no terminal stage: bets could never finish"
        for t in self.transitions:
            if t.source in terminal:
                yield f"edge {t.source} -> {t.dest} leaves terminal stage {t.source!r}"

    def _advance_cycles(self) -> Iterable[str]:
        graph: dict[str, list[str]] = {}
        for t in self.transitions:
            if t.kind is Kind.ADVANCE:
                graph.setdefault(t.source, []).append(t.dest)
        for cycle in _find_cycles(graph):
            yield f"advance edges form a cycle: {' -> '.join(cycle)}"


def _find_cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One representative cycle per strongly-entangled start, by depth-first search."""
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for nxt in graph.get(node, []):
            visit(nxt, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return cycles


# --- loading ----------------------------------------------------------------------


def validate_pipeline(data: Any, source: str) -> Pipeline:
    """Build and check a pipeline from a mapping or a :class:`Pipeline`; raise one error."""
    if isinstance(data, Pipeline):
        data = data.model_dump(by_alias=True)
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        raise PipelineError(source, [_pydantic_problem(e) for e in exc.errors()]) from None
    problems = pipeline.problems()
    if problems:
        raise PipelineError(source, problems)
    return pipeline


def _pydantic_problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top)"
    return f"{where}: {error['msg']}"


def load_pipeline(ref: str | None) -> Pipeline:
    """Load the pipeline named by ``FLEET_PIPELINE`` (default: fleet's built-in one)."""
    if not ref:
        ref = "fleet.defaults.pipeline:PIPELINE"
    return validate_pipeline(load_object(ref, PipelineError), ref)


def load_object(ref: str, error: type[PipelineError] | Any) -> Any:
    """Load data from a YAML/JSON file path or a ``module:attribute`` reference."""
    path = Path(ref)
    if path.suffix.lower() in {".yaml", ".yml", ".json"}:
        try:
            text = path.read_text()
            return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise error(ref, [f"cannot read: {first_line(exc)}"]) from None
    module_name, _, attribute = ref.partition(":")
    if not attribute:
        raise error(ref, ["expected a .yaml/.json file or module:attribute"])
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise error(ref, [f"cannot import: {first_line(exc)}"]) from None


def render_table(pipeline: Pipeline) -> str:
    """The handoff map as a Markdown table, generated from the data (for docs and the CLI)."""
    rows = ["| from | to | kind | owner |", "|---|---|---|---|"]
    rows += [f"| {t.source} | {t.dest} | {t.kind} | {t.owner} |" for t in pipeline.transitions]
    return "\n".join(rows)


def fill_seed_fields(templates: dict[str, str], n: int) -> dict[str, str]:
    """The fields of the ``n``-th seeded item: each template with ``{n}`` replaced by ``n``."""
    return {key: value.replace("{n}", str(n)) for key, value in templates.items()}


def render_stages(pipeline: Pipeline) -> str:
    """The stages as a Markdown table: terminal or not, SLA, meaning."""
    rows = ["| stage | terminal | SLA (h) | meaning |", "|---|---|---|---|"]
    rows += [
        f"| {s.name} | {'yes' if s.terminal else ''} | {s.sla_hours or ''} | {s.description} |"
        for s in pipeline.stages
    ]
    return "\n".join(rows)
