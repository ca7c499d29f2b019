"""What an audit finds, and how findings become board tasks (one per dedupe key)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from fleet.board import Board, Origin
from fleet.constants import OPERATOR

#: Who must act on a finding no single agent owns when no auditing agent is named (the CLI): a person.
DEFAULT_AUDITOR = OPERATOR


class FindingKind(StrEnum):
    """What an audit found."""

    SPEC_VERSION_BEHIND = "spec_version_behind"
    SPEC_VERSION_UNKNOWN = "spec_version_unknown"
    STALE_PROTOCOLS = "stale_protocols"
    SPEC_UNKNOWN_STAGE = "spec_unknown_stage"
    SPEC_UNKNOWN_EDGE = "spec_unknown_edge"
    SLA_OVERRIDE_UNKNOWN_STAGE = "sla_override_unknown_stage"
    PAST_SLA = "past_sla"
    CLAIM_EXPIRED = "claim_expired"
    REPEATED_FAILURES = "repeated_failures"
    OSCILLATING = "oscillating"
    DEAD_END = "dead_end"
    REFUSAL_LOOP = "refusal_loop"
    INSTRUCTIONS_MISSING = "instructions_missing"
    INSTRUCTIONS_BEHIND = "instructions_behind"
    INSTRUCTIONS_CHANGED = "instructions_changed"


class Finding(BaseModel):
    """One problem: what it is, the agent that must act, and the key of its board task."""

    model_config = ConfigDict(frozen=True)

    kind: FindingKind
    agent: str
    dedupe_key: str
    title: str
    detail: dict[str, Any]


def file_findings(
    board: Board, findings: Iterable[Finding], origin: Origin | str, by: str
) -> tuple[int, int]:
    """File one task per finding (deduplicated) and close ``origin``'s tasks no finding names.

    Returns (tasks newly filed, tasks closed). Call it once per origin with *all*
    of that origin's findings: any open task of the origin not found is closed.
    """
    findings = list(findings)
    filed = 0
    for finding in findings:
        _, new = board.file(
            assignee=finding.agent,
            origin=origin,
            dedupe_key=finding.dedupe_key,
            title=finding.title,
            detail={"kind": str(finding.kind), **finding.detail},
            by=by,
        )
        filed += new
    closed = board.close_resolved(origin, {f.dedupe_key for f in findings}, by=by)
    return filed, len(closed)
