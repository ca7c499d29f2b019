"""The shared protocols file: cross-agent rules every agent reads at the start of every heartbeat.

Rules that more than one agent must agree on (retry numbers, SLAs, escalation
thresholds, the log format, handoff rules) live in one YAML file,
``<FLEET_PROTOCOLS_DIR>/fleet.yaml``, never in individual agent specs: a change is
made once and every agent picks it up on its next heartbeat. Each heartbeat
records the file's version and content hash, so the drift audit can tell which
agents ran under which rules.

The file is validated strictly (unknown keys are errors); every problem is
reported at once in one :class:`~fleet.errors.ProtocolError`. A file larger than
``FLEET_PROTOCOLS_MAX_BYTES`` (default :data:`fleet.constants.MAX_PROTOCOLS_BYTES`)
is refused before it is parsed. Each distinct content is parsed and validated
once per process (keyed by its sha256): a heartbeat reads and hashes the bytes,
and parses only when they changed.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleet.definitions.pipeline import NAME_PATTERN, Pipeline
from fleet.errors import ProtocolError
from fleet.settings import get_settings

#: The file inside ``FLEET_PROTOCOLS_DIR``.
PROTOCOLS_FILENAME = "fleet.yaml"
#: Protocol versions are ``MAJOR.MINOR`` strings, e.g. ``"1.0"``.
VERSION_PATTERN = r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$"
#: File format majors this code understands; a ``2.x`` file needs newer code.
SUPPORTED_MAJORS = frozenset({1})
#: Characters of the sha256 hex digest kept as the file's hash.
HASH_LENGTH = 16
#: libyaml's loader when PyYAML was built with it (several times faster), else the pure-Python one.
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_version(version: str) -> tuple[int, int]:
    """``"1.2"`` -> ``(1, 2)``; anything else raises ``ValueError``."""
    match = re.match(VERSION_PATTERN, version)
    if match is None:
        raise ValueError(f'version {version!r} is not MAJOR.MINOR (e.g. "1.0")')
    return int(match.group(1)), int(match.group(2))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """External calls: ``attempts`` tries with exponential backoff plus random jitter."""

    attempts: int = Field(ge=1, le=20)
    initial_delay_s: float = Field(ge=0)
    max_delay_s: float = Field(ge=0)
    jitter_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> RetryPolicy:
        if self.max_delay_s < self.initial_delay_s:
            raise ValueError("max_delay_s must not be below initial_delay_s")
        return self


class TaskRetryPolicy(_Strict):
    """Celery-level retries of a whole heartbeat after a transient error."""

    max_retries: int = Field(ge=0, le=100)
    backoff_max_s: int = Field(ge=1)


#: Used by workers when the protocols file cannot be read at start (same as the shipped file).
DEFAULT_TASK_RETRY = TaskRetryPolicy(max_retries=5, backoff_max_s=600)


class EscalationPolicy(_Strict):
    """When the CEO's audit turns a symptom into a task on the board."""

    max_consecutive_failures: int = Field(ge=1)
    oscillation_heartbeats: int = Field(ge=2)
    claim_ttl_s: int = Field(ge=1)
    drift_window_h: float = Field(gt=0)
    # Defaults, so protocols files written before refusal-loop detection stay valid.
    refusal_loop_threshold: int = Field(default=5, ge=1)
    refusal_loop_window_h: float = Field(default=1.0, gt=0, le=24 * 365)


class BudgetPolicy(_Strict):
    """Per-agent daily spend caps (US dollars per UTC day) on the usage agents report, and the
    expected cost of one bet (or one run) reserved against the cap before it starts."""

    daily_usd: dict[str, float] = Field(default_factory=dict)
    #: Absent for an agent: its recent mean reported cost per bet (fleet.agents.budget).
    per_bet_usd: dict[str, float] = Field(default_factory=dict)

    @field_validator("daily_usd", "per_bet_usd")
    @classmethod
    def _positive(cls, caps: dict[str, float]) -> dict[str, float]:
        bad = sorted(agent for agent, usd in caps.items() if usd < 0)
        if bad:
            raise ValueError(f"budgets must not be negative, not for {bad}")
        return caps


class LoggingPolicy(_Strict):
    """The compact heartbeat log line: its format name and the fields it carries."""

    format: str = Field(pattern=NAME_PATTERN)
    fields: tuple[str, ...] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _distinct_names(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        bad = [f for f in fields if not re.match(NAME_PATTERN, f)]
        if bad:
            raise ValueError(f"field names must be lower_snake_case, got {bad}")
        if len(set(fields)) != len(fields):
            raise ValueError("fields are listed twice")
        return fields


class HistoryEntry(_Strict):
    """One earlier version of the protocols and what changed in it."""

    version: str = Field(pattern=VERSION_PATTERN)
    summary: str = Field(min_length=1)


class Protocols(_Strict):
    """The shared protocols file, as validated data."""

    version: str
    retry: RetryPolicy
    task_retry: TaskRetryPolicy
    stage_sla_hours: dict[str, float] = Field(default_factory=dict)
    escalation: EscalationPolicy
    logging: LoggingPolicy
    handoff_rules: tuple[str, ...] = Field(min_length=1)
    # A default, so protocols files written before budgets stay valid.
    budgets: BudgetPolicy = Field(default_factory=BudgetPolicy)
    history: tuple[HistoryEntry, ...] = ()

    @field_validator("version")
    @classmethod
    def _supported_version(cls, version: str) -> str:
        major, _ = parse_version(version)
        if major not in SUPPORTED_MAJORS:
            supported = ", ".join(f"{m}.x" for m in sorted(SUPPORTED_MAJORS))
            raise ValueError(f"unknown protocols format {version!r} (this fleet reads {supported})")
        return version

    @field_validator("stage_sla_hours")
    @classmethod
    def _positive_slas(cls, slas: dict[str, float]) -> dict[str, float]:
        bad = sorted(stage for stage, hours in slas.items() if hours <= 0)
        if bad:
            raise ValueError(f"SLA hours must be positive, not for {bad}")
        return slas

    @model_validator(mode="after")
    def _history_is_the_past(self) -> Protocols:
        versions = [entry.version for entry in self.history]
        if len(set(versions)) != len(versions):
            raise ValueError("history lists a version twice")
        current = parse_version(self.version)
        newer = [v for v in versions if parse_version(v) > current]
        if newer:
            raise ValueError(f"history lists versions newer than {self.version!r}: {newer}")
        return self

    def effective_sla(self, pipeline: Pipeline, stage: str) -> timedelta | None:
        """How long a bet may wait at ``stage``: the override here, else the pipeline's SLA.

        ``None`` for a terminal or unknown stage, or one without any SLA.
        """
        known = pipeline.stage_map.get(stage)
        if known is None or known.terminal:
            return None
        hours = self.stage_sla_hours.get(stage, known.sla_hours)
        return None if hours is None else timedelta(hours=hours)

    def unknown_sla_stages(self, pipeline: Pipeline) -> list[str]:
        """SLA overrides naming stages the pipeline does not have (or terminal ones)."""
        stages = pipeline.stage_map
        return sorted(s for s in self.stage_sla_hours if s not in stages or stages[s].terminal)


class ProtocolStamp(BaseModel):
    """Which version of the shared protocols a decision was taken under."""

    model_config = ConfigDict(frozen=True)

    version: str
    hash: str


@dataclass(frozen=True)
class LoadedProtocols:
    """The protocols as read from one file, with the version and hash a heartbeat records."""

    protocols: Protocols
    version: str
    hash: str
    path: Path
    #: The bytes that were parsed and hashed (what agents are shown: never a later re-read).
    content: bytes = b""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def stamp(self) -> ProtocolStamp:
        """The (version, hash) pair stamped on every transition and heartbeat."""
        return ProtocolStamp(version=self.version, hash=self.hash)

    @property
    def known_versions(self) -> list[str]:
        """The current version and every version in the history, newest first."""
        versions = {self.version, *(entry.version for entry in self.protocols.history)}
        return sorted(versions, key=parse_version, reverse=True)


def version_known(loaded: LoadedProtocols, version: str) -> bool:
    """True when ``version`` is the current protocols version or one in its history."""
    return version in loaded.known_versions


def protocols_path(directory: Path) -> Path:
    """Where the protocols file of ``directory`` lives."""
    return Path(directory) / PROTOCOLS_FILENAME


def file_hash(content: bytes) -> str:
    """The short content hash recorded by heartbeats and transitions."""
    return hashlib.sha256(content).hexdigest()[:HASH_LENGTH]


def load_protocols(directory: Path, max_bytes: int | None = None) -> LoadedProtocols:
    """Read and validate ``<directory>/fleet.yaml``; any problem is one :class:`ProtocolError`.

    ``max_bytes`` defaults to the ``FLEET_PROTOCOLS_MAX_BYTES`` setting; a larger file is
    refused unread. Content already validated in this process is not parsed again.
    """
    path = protocols_path(directory)
    content = _read(path, _max_bytes() if max_bytes is None else max_bytes)
    protocols = _validated(str(path), content)
    return LoadedProtocols(protocols, protocols.version, file_hash(content), path, content)


def _max_bytes() -> int:
    return get_settings().protocols_max_bytes


#: Validated protocols (or the problems found) per (path, sha256 of the content), newest last:
#: every heartbeat reads the file (an edit takes effect at the next one) but parses it only when
#: its content changed.
_PARSED: OrderedDict[tuple[str, str], Protocols | ProtocolError] = OrderedDict()
#: Distinct contents kept parsed (a rollout has two: the old file and the new one).
_PARSED_KEEP = 8
_PARSED_LOCK = threading.Lock()  # heartbeats of one process run in threads


def _validated(path: str, content: bytes) -> Protocols:
    """The protocols in ``content``, parsed once per distinct content (the cache keeps a few)."""
    key = (path, hashlib.sha256(content).hexdigest())
    with _PARSED_LOCK:
        known = _PARSED.get(key)
        if known is not None:
            _PARSED.move_to_end(key)
    if known is None:
        known = _parse_and_validate(path, content)
        with _PARSED_LOCK:
            _PARSED[key] = known
            while len(_PARSED) > _PARSED_KEEP:
                _PARSED.popitem(last=False)
    if isinstance(known, ProtocolError):
        raise ProtocolError(known.source, known.problems)
    return known


def _parse_and_validate(path: str, content: bytes) -> Protocols | ProtocolError:
    try:
        data = _parse(Path(path), content)
        return Protocols.model_validate(data)
    except ProtocolError as exc:
        return exc
    except ValidationError as exc:
        return ProtocolError(path, [_problem(error) for error in exc.errors()])


def _read(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; one over ``max_bytes`` is refused before it is read whole."""
    try:
        with path.open("rb") as f:
            content = f.read(max_bytes + 1)  # never more than the cap into memory
    except FileNotFoundError:
        raise ProtocolError(str(path), ["file not found (check FLEET_PROTOCOLS_DIR)"]) from None
    except OSError as exc:
        raise ProtocolError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    if len(content) > max_bytes:
        limit = f"over the limit of {max_bytes:,} bytes (FLEET_PROTOCOLS_MAX_BYTES)"
        raise ProtocolError(str(path), [f"file too large: {limit}"])
    return content


def _parse(path: Path, content: bytes) -> dict[str, Any]:
    try:
        data = yaml.load(content, Loader=YAML_LOADER)  # noqa: S506 - a safe loader, C or Python
    except yaml.YAMLError as exc:
        raise ProtocolError(str(path), [f"not valid YAML: {_yaml_problem(exc)}"]) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ProtocolError(str(path), [f"expected a mapping of settings, the file is {kind}"])
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)


def _problem(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if where == "version" and error["type"] == "string_type":
        message = 'must be a quoted string like "1.0" (YAML reads 1.0 as a number)'
    return f"{where}: {message}"
