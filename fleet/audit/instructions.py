"""The instructions audit: files missing or malformed, written for other protocols, or changed
since the agent last ran with them (reported by the drift audit, :mod:`fleet.audit.drift`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pymongo.database import Database

from fleet.definitions.catalogue import AgentSpec, Registry
from fleet.definitions.instructions import InstructionsError, load
from fleet.definitions.protocols import LoadedProtocols
from fleet.runtime import records
from fleet.settings import Settings
from fleet.store import Document


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
    latest = records.latest(db, agent, ["instructions_hash"])
    value = None if latest is None else latest.get("instructions_hash")
    return value if isinstance(value, str) else None
