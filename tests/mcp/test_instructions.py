"""Instructions files: front matter, the hash on heartbeat records, the payload, and drift."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pymongo.database import Database

from fleet.audit.instructions import drift
from fleet.defaults.catalogue import CATALOGUE
from fleet.definitions.catalogue import Registry, validate_catalogue
from fleet.definitions.instructions import InstructionsError, load
from fleet.definitions.pipeline import load_pipeline
from fleet.definitions.protocols import file_hash, load_protocols
from fleet.ledger import Bet
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.runtime import Runtime
from fleet.settings import Settings, get_settings, load_settings
from fleet.store import Document
from tests.conftest import ROOT

GATE = "source_validation_gate"
TEXT = '---\nprotocols_version: "1.0"\nmodel: any\n---\nYou are the source validation gate.\n'


def registry_with(**changes: Any) -> Registry:
    data = copy.deepcopy(CATALOGUE)
    for spec in data["agents"]:
        if spec["name"] == GATE:
            spec.update(instructions="gate.md", **changes)
    return validate_catalogue(data, load_pipeline(None), "test")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "gate.md").write_text(TEXT)
    monkeypatch.setenv("FLEET_INSTRUCTIONS_DIR", str(tmp_path))
    get_settings.cache_clear()
    return tmp_path


def settings() -> Settings:
    return load_settings()


def beat(registry: Registry) -> tuple[Any, Runtime]:
    runtime = Runtime.build(settings(), registry)
    try:
        return run_heartbeat(runtime, GATE, "adhoc"), runtime
    finally:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)


def test_the_hash_is_stamped_on_heartbeat_records(db: Database[Document], redis: Any, folder: Path) -> None:
    record, _ = beat(registry_with())
    assert record.instructions_hash == file_hash(TEXT.encode())
    stored = db["heartbeats"].find_one({"_id": record.heartbeat_id})
    assert stored is not None and stored["instructions_hash"] == record.instructions_hash


def test_a_command_agent_reads_its_instructions_on_stdin(
    db: Database[Document], redis: Any, folder: Path, agent_env: None, bet: Bet, tmp_path: Path
) -> None:
    dump = tmp_path / "payload.json"
    code = f"import sys; open({str(dump)!r}, 'w').write(sys.stdin.read())"
    record, _ = beat(registry_with(handler={"command": [sys.executable, "-c", code]}))
    assert record.status == "ok", record.error
    payload = json.loads(dump.read_text())
    assert payload["instructions"]["text"] == "You are the source validation gate.\n"
    assert payload["instructions"]["front_matter"] == {"protocols_version": "1.0", "model": "any"}
    assert payload["bet"]["bet_id"] == bet.bet_id and payload["protocols"]["version"] == "1.0"


def test_drift_missing_behind_and_changed(db: Database[Document], redis: Any, folder: Path) -> None:
    registry, loaded = registry_with(), load_protocols(ROOT / "protocols")
    assert drift(settings(), registry, loaded, db) == []
    beat(registry)
    (folder / "gate.md").write_text(TEXT.replace('"1.0"', '"0.9"'))
    kinds = sorted(d.kind for d in drift(settings(), registry, loaded, db))
    assert kinds == ["behind", "changed"]
    (folder / "gate.md").unlink()
    (missing,) = drift(settings(), registry, loaded, db)
    assert missing.kind == "missing" and "gate.md" in missing.detail


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("no front matter\n", "do not start with"),
        ("---\nprotocols_version: 1.0\n", "not closed"),
        ("---\nmodel: x\n---\nbody\n", "must name protocols_version"),
        ("---\n: [\n---\n", "bad front matter"),
    ],
)
def test_bad_files_are_one_clear_error(folder: Path, text: str, why: str) -> None:
    (folder / "gate.md").write_text(text)
    with pytest.raises(InstructionsError, match=why):
        load(settings(), registry_with().require(GATE))


def test_the_drift_audit_reports_instructions_problems(
    db: Database[Document], redis: Any, folder: Path
) -> None:
    from datetime import UTC, datetime

    from fleet.audit import drift_findings

    registry, loaded = registry_with(), load_protocols(ROOT / "protocols")
    (folder / "gate.md").write_text(TEXT.replace('"1.0"', '"0.9"'))
    (finding,) = [f for f in drift_findings(registry, loaded, db, datetime.now(UTC)) if f.agent == GATE]
    assert finding.kind == "instructions_behind" and "written for protocols 0.9" in finding.title
    assert finding.dedupe_key == f"drift:instructions-behind:{GATE}"
