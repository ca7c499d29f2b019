"""Agent instructions as versioned files: markdown with a YAML front matter.

An agent spec may name an instructions file (``instructions: gate.md``, relative to
``FLEET_INSTRUCTIONS_DIR``). Its front matter names at least the protocols version it
was written for::

    ---
    protocols_version: "1.0"
    ---
    You are the source validation gate. ...

Every heartbeat stamps the file's content hash on its record; external agents get the
text, the front matter and the hash in their payload. :func:`drift` lists what the drift
audit should report: a file missing or malformed, written for another protocols version,
or changed since the agent's last heartbeat ran with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pymongo import DESCENDING
from pymongo.database import Database

from fleet.constants import HEARTBEATS
from fleet.errors import ConfigError
from fleet.protocols import LoadedProtocols, file_hash
from fleet.settings import Settings
from fleet.store import Document, translated

if TYPE_CHECKING:
    from fleet.agents import AgentSpec, Registry

#: Largest instructions file read (a real one is a few KiB).
MAX_BYTES = 256 * 1024
FENCE = "---"


class InstructionsError(ConfigError):
    """An agent's instructions file is missing, too large or has no valid front matter."""


@dataclass(frozen=True)
class Instructions:
    """One agent's instructions as read now."""

    path: Path
    front_matter: dict[str, Any]
    body: str
    hash: str

    @property
    def protocols_version(self) -> str:
        return str(self.front_matter["protocols_version"])

    def payload(self) -> dict[str, Any]:
        """What an external agent reads: the text, the front matter and the hash."""
        return {"text": self.body, "front_matter": self.front_matter, "hash": self.hash}


def path_of(settings: Settings, spec: AgentSpec) -> Path | None:
    """Where the spec's instructions file is, or None when it names none."""
    return None if spec.instructions is None else settings.instructions_dir / spec.instructions


def load(settings: Settings, spec: AgentSpec) -> Instructions | None:
    """The spec's instructions, None when it names none; :class:`InstructionsError` if unusable."""
    path = path_of(settings, spec)
    if path is None:
        return None
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise InstructionsError(f"{spec.name}: instructions {path}: {exc.strerror or exc}") from None
    if len(content) > MAX_BYTES:
        raise InstructionsError(f"{spec.name}: instructions {path} exceed {MAX_BYTES} bytes")
    front, body = _split(spec.name, path, content.decode("utf-8", errors="replace"))
    return Instructions(path, front, body, file_hash(content))


def _split(agent: str, path: Path, text: str) -> tuple[dict[str, Any], str]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != FENCE:
        raise InstructionsError(f"{agent}: instructions {path} do not start with a --- front matter")
    end = next((n for n, line in enumerate(lines[1:], 1) if line.strip() == FENCE), None)
    if end is None:
        raise InstructionsError(f"{agent}: instructions {path}: the front matter is not closed by ---")
    try:
        front = yaml.safe_load("".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        raise InstructionsError(f"{agent}: instructions {path}: bad front matter: {exc}") from None
    if not isinstance(front, dict) or not isinstance(front.get("protocols_version"), str | int | float):
        raise InstructionsError(f"{agent}: instructions {path}: the front matter must name protocols_version")
    return front, "".join(lines[end + 1 :])


def stamp(settings: Settings, spec: AgentSpec) -> str | None:
    """The hash a heartbeat records: the file's, or None (no file, or unusable: see :func:`drift`)."""
    try:
        found = load(settings, spec)
    except InstructionsError:
        return None
    return None if found is None else found.hash


@dataclass(frozen=True)
class Drift:
    """One instructions problem for the drift audit."""

    agent: str
    kind: str  # missing (or malformed), behind, changed
    detail: str


def drift(
    settings: Settings, registry: Registry, loaded: LoadedProtocols, db: Database[Document]
) -> list[Drift]:
    """Every agent whose instructions are unusable, behind the protocols, or changed since it last ran."""
    return [problem for spec in registry for problem in _drift_of(settings, spec, loaded, db)]


def _drift_of(
    settings: Settings, spec: AgentSpec, loaded: LoadedProtocols, db: Database[Document]
) -> Iterator[Drift]:
    try:
        found = load(settings, spec)
    except InstructionsError as exc:
        yield Drift(spec.name, "missing", str(exc))
        return
    if found is None:
        return
    if found.protocols_version != loaded.version:
        detail = f"written for protocols {found.protocols_version}, current is {loaded.version}"
        yield Drift(spec.name, "behind", detail)
    last = _last_hash(db, spec.name)
    if last is not None and last != found.hash:
        yield Drift(
            spec.name, "changed", f"changed since the last heartbeat (ran with {last}, now {found.hash})"
        )


def _last_hash(db: Database[Document], agent: str) -> str | None:
    with translated("reading heartbeats"):
        doc = db[HEARTBEATS].find_one(
            {"agent": agent}, {"instructions_hash": 1}, sort=[("started_at", DESCENDING)]
        )
    value = None if doc is None else doc.get("instructions_hash")
    return value if isinstance(value, str) else None
