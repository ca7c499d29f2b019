"""Agent instructions as versioned files: markdown with a YAML front matter.

An agent spec may name an instructions file (``instructions: gate.md``, relative to
``FLEET_INSTRUCTIONS_DIR``). Its front matter names at least the protocols version it
was written for::

    ---
    protocols_version: "1.0"
    ---
    You are the source validation gate. ...

A heartbeat reads the file once at its start, stamps its content hash on its record and
hands the same content to every bet (external agents get the text, the front matter and
the hash in their payload). :mod:`fleet.audit.instructions` lists what the drift audit
reports: a file missing or malformed, written for another protocols version, or changed
since the agent's last heartbeat ran with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from fleet.definitions.protocols import file_hash
from fleet.errors import ConfigError
from fleet.settings import Settings

if TYPE_CHECKING:
    from fleet.definitions.catalogue import AgentSpec

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


def load_usable(settings: Settings, spec: AgentSpec) -> Instructions | None:
    """The spec's instructions as a heartbeat reads them once at its start: None when it names
    none or they are unusable (the drift audit, :mod:`fleet.audit.instructions`, says why)."""
    try:
        return load(settings, spec)
    except InstructionsError:
        return None
