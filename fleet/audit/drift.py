"""The drift audit: agents whose specs or heartbeats disagree with the protocols or the pipeline."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from pymongo.database import Database

from fleet.audit import instructions
from fleet.audit.common import Doc, find, when
from fleet.audit.findings import DEFAULT_AUDITOR, Finding, FindingKind
from fleet.constants import HEARTBEATS
from fleet.definitions.catalogue import Registry
from fleet.definitions.pipeline import Pipeline
from fleet.definitions.protocols import LoadedProtocols, version_known
from fleet.settings import get_settings


def drift_findings(
    registry: Registry,
    loaded: LoadedProtocols,
    db: Database[Doc],
    now: datetime,
    *,
    auditor: str = DEFAULT_AUDITOR,
) -> list[Finding]:
    """Every way agents have drifted from the shared protocols or the pipeline."""
    return [
        *_spec_version_findings(registry, loaded),
        *_stale_protocol_findings(db, loaded, now),
        *_spec_pipeline_findings(registry),
        *_sla_override_findings(registry.pipeline, loaded, auditor),
        *_instructions_findings(registry, loaded, db),
    ]


#: How an instructions problem (fleet.audit.instructions.Drift.kind) becomes a finding.
_INSTRUCTIONS_KINDS = {
    "missing": (FindingKind.INSTRUCTIONS_MISSING, "fix the instructions file of {agent}"),
    "behind": (
        FindingKind.INSTRUCTIONS_BEHIND,
        "update the instructions of {agent} to the current protocols",
    ),
    "changed": (FindingKind.INSTRUCTIONS_CHANGED, "{agent} has not run since its instructions changed"),
}


def _instructions_findings(
    registry: Registry, loaded: LoadedProtocols, db: Database[Doc]
) -> Iterator[Finding]:
    """Instructions files missing or malformed, written for other protocols, or changed since the last run."""
    for problem in instructions.drift(get_settings(), registry, loaded, db):
        kind, title = _INSTRUCTIONS_KINDS[problem.kind]
        yield Finding(
            kind=kind,
            agent=problem.agent,
            detail={"problem": problem.detail},
            dedupe_key=f"drift:instructions-{problem.kind}:{problem.agent}",
            title=f"{title.format(agent=problem.agent)}: {problem.detail}",
        )


def _spec_version_findings(registry: Registry, loaded: LoadedProtocols) -> Iterator[Finding]:
    current = loaded.version
    for spec in registry:
        version = spec.protocol_version
        if version == current:
            continue
        detail = {"spec_version": version, "current_version": current, "known": loaded.known_versions}
        if version_known(loaded, version):
            yield Finding(
                kind=FindingKind.SPEC_VERSION_BEHIND,
                agent=spec.name,
                detail=detail,
                dedupe_key=f"drift:spec-version:{spec.name}:{version}:{current}",
                title=f"update the spec of {spec.name}: written for protocols {version}, "
                f"current is {current}",
            )
        else:
            yield Finding(
                kind=FindingKind.SPEC_VERSION_UNKNOWN,
                agent=spec.name,
                detail=detail,
                dedupe_key=f"drift:spec-version-unknown:{spec.name}:{version}",
                title=f"fix the spec of {spec.name}: it names protocols {version}, which does not exist "
                f"(current is {current})",
            )


def _stale_protocol_findings(db: Database[Doc], loaded: LoadedProtocols, now: datetime) -> Iterator[Finding]:
    """Heartbeats under another protocols hash, started after the current file was first used.

    Heartbeats before that moment ran under the rules of their time, which is no drift.
    """
    since = now - timedelta(hours=loaded.protocols.escalation.drift_window_h)
    fields = ["agent", "started_at", "protocol_hash", "protocol_version", "worker"]
    found = find(db, HEARTBEATS, {"started_at": {"$gte": since}}, fields)
    beats = [(at, beat) for beat in found if (at := when(beat, "started_at")) is not None]
    first_use = min((at for at, beat in beats if beat.get("protocol_hash") == loaded.hash), default=None)
    if first_use is None:
        return  # nobody ran under the current file yet: everyone is on the rules of their time
    groups: dict[tuple[str, str], list[Doc]] = defaultdict(list)
    for at, beat in beats:
        old_hash = beat.get("protocol_hash")
        if old_hash is not None and old_hash != loaded.hash and at >= first_use:
            groups[(str(beat.get("agent")), str(old_hash))].append(beat)
    for (agent, old_hash), group in sorted(groups.items()):
        yield _stale_protocol_finding(agent, old_hash, group, loaded)


def _stale_protocol_finding(agent: str, old_hash: str, beats: list[Doc], loaded: LoadedProtocols) -> Finding:
    last = max(beats, key=lambda b: when(b, "started_at") or datetime.min.replace(tzinfo=UTC))
    workers = sorted({str(b.get("worker")) for b in beats})
    version = str(last.get("protocol_version"))
    return Finding(
        kind=FindingKind.STALE_PROTOCOLS,
        agent=agent,
        dedupe_key=f"drift:protocol-hash:{agent}:{old_hash}",
        title=f"{agent} ran {len(beats)} heartbeat(s) on worker(s) {', '.join(workers)} under protocols "
        f"{version} ({old_hash}), not the current {loaded.version} ({loaded.hash})",
        detail={
            "protocol_hash": old_hash,
            "protocol_version": version,
            "current_hash": loaded.hash,
            "current_version": loaded.version,
            "heartbeats": len(beats),
            "workers": workers,
            "last_heartbeat_id": str(last.get("_id")),
            "last_at": when(last, "started_at"),
        },
    )


def _spec_pipeline_findings(registry: Registry) -> Iterator[Finding]:
    pipeline = registry.pipeline
    for spec in registry:
        for stage in spec.polls:
            known = pipeline.stage_map.get(stage)
            if known is None or known.terminal:
                why = "does not exist" if known is None else "is terminal"
                yield Finding(
                    kind=FindingKind.SPEC_UNKNOWN_STAGE,
                    agent=spec.name,
                    dedupe_key=f"drift:spec-stage:{spec.name}:{stage}",
                    title=f"fix the spec of {spec.name}: it polls stage {stage!r}, which {why} "
                    "in the pipeline",
                    detail={"stage": stage, "pipeline": pipeline.name},
                )
        for source, dest in spec.owns:
            yield from _edge_finding(pipeline, spec.name, source, dest)


def _edge_finding(pipeline: Pipeline, agent: str, source: str, dest: str) -> Iterator[Finding]:
    edge = pipeline.edge(source, dest)
    if edge is not None and edge.owner == agent:
        return
    why = "does not exist" if edge is None else f"is owned by {edge.owner}"
    yield Finding(
        kind=FindingKind.SPEC_UNKNOWN_EDGE,
        agent=agent,
        dedupe_key=f"drift:spec-edge:{agent}:{source}->{dest}",
        title=f"fix the spec of {agent}: it owns {source} -> {dest}, which {why} in the pipeline",
        detail={
            "from_stage": source,
            "to_stage": dest,
            "owner": edge.owner if edge else None,
            "pipeline": pipeline.name,
        },
    )


def _sla_override_findings(pipeline: Pipeline, loaded: LoadedProtocols, auditor: str) -> Iterator[Finding]:
    for stage in loaded.protocols.unknown_sla_stages(pipeline):
        yield Finding(
            kind=FindingKind.SLA_OVERRIDE_UNKNOWN_STAGE,
            agent=auditor,
            dedupe_key=f"drift:sla-override:{stage}",
            title=f"fix the protocols: stage_sla_hours names {stage!r}, which is no open stage "
            f"of pipeline {pipeline.name}",
            detail={"stage": stage, "protocols": str(loaded.path), "pipeline": pipeline.name},
        )
