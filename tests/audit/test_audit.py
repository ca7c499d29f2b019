"""The CEO's audits over shared-state documents: drift, stranded bets, and the tasks they file.

Documents are inserted in the shapes the ledger, the claims and the heartbeat
runtime write (those shapes are the shared-state contracts), around a fixed NOW.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo import MongoClient
from pymongo.database import Database

from fleet.audit import (
    Finding,
    FindingKind,
    drift_findings,
    file_findings,
    protocol_versions_for_bet,
    stranded_findings,
)
from fleet.board import Board, Origin
from fleet.constants import BETS, CLAIMS, FAILURES, HEARTBEATS, TRANSITIONS
from fleet.definitions.catalogue import Registry, validate_catalogue
from fleet.definitions.pipeline import validate_pipeline
from fleet.definitions.protocols import PROTOCOLS_FILENAME, LoadedProtocols, load_protocols
from fleet.errors import LedgerUnavailable

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SHIPPED = Path(__file__).resolve().parents[2] / "protocols" / PROTOCOLS_FILENAME

PIPELINE: dict[str, Any] = {
    "name": "tiny",
    "initial_stage": "new",
    "creators": ["maker"],
    "stages": [
        {"name": "new", "sla_hours": 2},
        {"name": "checked", "sla_hours": 4},
        {"name": "limbo", "sla_hours": 100},  # nothing leaves it
        {"name": "orphan", "sla_hours": 100},  # an edge leaves it, but nobody polls it
        {"name": "done", "terminal": True},
        {"name": "dropped", "terminal": True},
    ],
    "transitions": [
        {"from": "new", "to": "checked", "owner": "checker"},
        {"from": "new", "to": "dropped", "owner": "checker", "kind": "kill"},
        {"from": "new", "to": "limbo", "owner": "checker", "kind": "park"},
        {"from": "new", "to": "orphan", "owner": "checker", "kind": "park"},
        {"from": "checked", "to": "done", "owner": "shipper"},
        {"from": "orphan", "to": "done", "owner": "closer"},
    ],
}


def agent(name: str, polls: list[str], owns: list[list[str]], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "group": "ops",
        "queue": "ops",
        "schedule": {"hours": [0]},
        "polls": polls,
        "owns": owns,
        "protocol_version": "1.1",
        "handler": "fleet.defaults.sim:gate",
        **extra,
    }


def registry(**versions: str) -> Registry:
    """The tiny fleet; ``versions`` overrides an agent's protocol_version."""
    agents = [
        agent("maker", [], [], creates=True),
        agent(
            "checker", ["new"], [["new", "checked"], ["new", "dropped"], ["new", "limbo"], ["new", "orphan"]]
        ),
        agent("shipper", ["checked"], [["checked", "done"]]),
        agent("closer", [], [["orphan", "done"]]),
        agent("ceo", [], []),
    ]
    for spec in agents:
        spec["protocol_version"] = versions.get(spec["name"], "1.1")
    pipeline = validate_pipeline(PIPELINE, "tiny")
    return validate_catalogue({"queues": ["ops"], "agents": agents}, pipeline, "tiny")


@pytest.fixture
def protocols(tmp_path: Path) -> LoadedProtocols:
    return protocols_with(tmp_path)


def protocols_with(tmp_path: Path, **changes: Any) -> LoadedProtocols:
    data = yaml.safe_load(SHIPPED.read_text())
    data.update(version="1.1", history=[{"version": "1.0", "summary": "first rules"}], **changes)
    (tmp_path / PROTOCOLS_FILENAME).write_text(yaml.safe_dump(data))
    return load_protocols(tmp_path)


def kinds(findings: list[Finding]) -> list[tuple[str, str]]:
    return sorted((str(f.kind), f.agent) for f in findings)


# --- documents in the shared-state shapes -------------------------------------------


def put_bet(
    db: Database[Any],
    bet_id: str,
    stage: str,
    *,
    seq: int = 1,
    age: timedelta = timedelta(hours=1),
    by: str = "checker",
    from_stage: str | None = "new",
    kind: str = "advance",
    version: str = "1.1",
    hash_: str = "h11",
) -> None:
    """A bet's projection and its latest transition record (``<bet>:<seq>``)."""
    at = NOW - age
    db[BETS].insert_one(
        {
            "_id": bet_id,
            "stage": stage,
            "seq": seq,
            "fields": {},
            "created_by": "maker",
            "created_at": at - timedelta(hours=1),
            "updated_at": at,
        }
    )
    record(db, bet_id, seq, from_stage, stage, by=by, kind=kind, at=at, version=version, hash_=hash_)


def record(
    db: Database[Any],
    bet_id: str,
    seq: int,
    from_stage: str | None,
    to_stage: str,
    *,
    by: str,
    at: datetime,
    kind: str = "advance",
    version: str = "1.1",
    hash_: str = "h11",
) -> None:
    db[TRANSITIONS].insert_one(
        {
            "_id": f"{bet_id}:{seq}",
            "bet_id": bet_id,
            "seq": seq,
            "from_stage": from_stage,
            "to_stage": to_stage,
            "agent": by,
            "kind": kind,
            "heartbeat_id": f"hb-{by}-{seq}",
            "protocol_version": version,
            "protocol_hash": hash_,
            "verdict": "looks good",
            "evidence": {},
            "at": at,
        }
    )


def heartbeat(
    db: Database[Any],
    hb_id: str,
    agent_name: str,
    *,
    ago: timedelta,
    hash_: str = "h11",
    version: str = "1.1",
    worker: str = "host-a:100",
    bets: list[dict[str, Any]] | None = None,
) -> None:
    started = NOW - ago
    db[HEARTBEATS].insert_one(
        {
            "_id": hb_id,
            "agent": agent_name,
            "reason": "scheduled",
            "status": "ok",
            "started_at": started,
            "finished_at": started + timedelta(seconds=3),
            "duration_s": 3.0,
            "protocol_version": version,
            "protocol_hash": hash_,
            "spec_protocol_version": version,
            "actions": {"claimed": len(bets or [])},
            "bets": bets or [],
            "worker": worker,
            "error": None,
        }
    )


def claim(
    db: Database[Any],
    bet_id: str,
    seq: int,
    n: int,
    *,
    by: str,
    expires_in: timedelta,
    released: bool = False,
) -> None:
    db[CLAIMS].insert_one(
        {
            "_id": f"{bet_id}:{seq}:{n}",
            "bet_id": bet_id,
            "seq": seq,
            "n": n,
            "agent": by,
            "heartbeat_id": f"hb-claim-{n}",
            "claimed_at": NOW - timedelta(minutes=10),
            "expires_at": NOW + expires_in,
            "released_at": NOW if released else None,
        }
    )


def failure(
    db: Database[Any], bet_id: str, seq: int, *, by: str = "checker", error: str = "ads API 503"
) -> None:
    db[FAILURES].insert_one(
        {"bet_id": bet_id, "seq": seq, "agent": by, "heartbeat_id": "hb-x", "error": error, "at": NOW}
    )


def with_hash(loaded: LoadedProtocols, hash_: str) -> LoadedProtocols:
    return LoadedProtocols(loaded.protocols, loaded.version, hash_, loaded.path)


# --- drift: spec versions -------------------------------------------------------------


def test_no_drift_when_everything_matches(db: Database[Any], protocols: LoadedProtocols) -> None:
    assert drift_findings(registry(), protocols, db, NOW) == []


def test_a_spec_behind_the_current_protocols(db: Database[Any], protocols: LoadedProtocols) -> None:
    [finding] = drift_findings(registry(shipper="1.0"), protocols, db, NOW)
    assert (finding.kind, finding.agent) == (FindingKind.SPEC_VERSION_BEHIND, "shipper")
    assert finding.dedupe_key == "drift:spec-version:shipper:1.0:1.1"
    assert "written for protocols 1.0, current is 1.1" in finding.title
    assert finding.detail["known"] == ["1.1", "1.0"]


def test_a_spec_naming_a_version_that_never_existed(db: Database[Any], protocols: LoadedProtocols) -> None:
    findings = drift_findings(registry(checker="0.7", closer="2.0"), protocols, db, NOW)
    assert kinds(findings) == [("spec_version_unknown", "checker"), ("spec_version_unknown", "closer")]
    assert all("which does not exist" in f.title for f in findings)


# --- drift: heartbeats under other protocols --------------------------------------------


def test_heartbeats_under_an_old_hash_after_the_current_one_is_in_use(
    db: Database[Any], protocols: LoadedProtocols
) -> None:
    loaded = with_hash(protocols, "h11")
    # Given the current file in use since 2h ago
    heartbeat(db, "ceo-1", "ceo", ago=timedelta(hours=2))
    # And a worker still running the checker under the old file since then
    heartbeat(db, "chk-1", "checker", ago=timedelta(hours=1), hash_="h10", version="1.0", worker="host-b:7")
    heartbeat(db, "chk-2", "checker", ago=timedelta(minutes=5), hash_="h10", version="1.0", worker="host-b:7")
    # And heartbeats under the old file from before the switch, or outside the window
    heartbeat(db, "shp-1", "shipper", ago=timedelta(hours=3), hash_="h10", version="1.0")
    heartbeat(db, "mak-1", "maker", ago=timedelta(hours=30), hash_="h09", version="1.0")
    # When the drift audit runs
    [finding] = drift_findings(registry(), loaded, db, NOW)
    # Then one finding names the agent, the old rules and the worker still running them
    assert (finding.kind, finding.agent) == (FindingKind.STALE_PROTOCOLS, "checker")
    assert finding.dedupe_key == "drift:protocol-hash:checker:h10"
    assert "host-b:7" in finding.title and "1.0 (h10)" in finding.title
    assert finding.detail["heartbeats"] == 2 and finding.detail["workers"] == ["host-b:7"]
    assert finding.detail["last_heartbeat_id"] == "chk-2"


def test_no_hash_drift_before_anyone_runs_the_current_file(
    db: Database[Any], protocols: LoadedProtocols
) -> None:
    heartbeat(db, "chk-1", "checker", ago=timedelta(hours=1), hash_="h10")
    assert drift_findings(registry(), with_hash(protocols, "h11"), db, NOW) == []


def test_refused_heartbeats_without_a_hash_are_not_drift(
    db: Database[Any], protocols: LoadedProtocols
) -> None:
    heartbeat(db, "ceo-1", "ceo", ago=timedelta(hours=2))
    db[HEARTBEATS].insert_one({"_id": "r", "agent": "checker", "started_at": NOW, "protocol_hash": None})
    assert drift_findings(registry(), with_hash(protocols, "h11"), db, NOW) == []


# --- drift: specs against the pipeline ------------------------------------------------


def test_specs_naming_stages_or_edges_the_pipeline_no_longer_has(
    db: Database[Any], protocols: LoadedProtocols
) -> None:
    # Given the catalogue checked against the pipeline, and then the pipeline changed:
    # "checked" was renamed "verified"
    old = registry()
    renamed = yaml.safe_load(yaml.safe_dump(PIPELINE).replace("checked", "verified"))
    drifted = Registry(old.catalogue, validate_pipeline(renamed, "tiny v2"))
    # When the drift audit runs
    findings = drift_findings(drifted, protocols, db, NOW)
    # Then each spec still naming the old stage or edges is found
    assert {f.dedupe_key for f in findings} == {
        "drift:spec-stage:shipper:checked",
        "drift:spec-edge:checker:new->checked",
        "drift:spec-edge:shipper:checked->done",
    }
    assert kinds(findings) == [
        ("spec_unknown_edge", "checker"),
        ("spec_unknown_edge", "shipper"),
        ("spec_unknown_stage", "shipper"),
    ]


def test_sla_overrides_for_stages_that_do_not_exist(db: Database[Any], tmp_path: Path) -> None:
    loaded = protocols_with(tmp_path, stage_sla_hours={"new": 1, "chekced": 2})
    [finding] = drift_findings(registry(), loaded, db, NOW, auditor="ceo")
    assert (finding.kind, finding.agent) == (FindingKind.SLA_OVERRIDE_UNKNOWN_STAGE, "ceo")
    assert "'chekced'" in finding.title


# --- stranded: SLA ------------------------------------------------------------------------


def test_a_bet_past_its_stage_sla(db: Database[Any], protocols: LoadedProtocols) -> None:
    # Given a bet created 3h ago at "new" (SLA 2h) that a checker heartbeat deferred
    put_bet(db, "b1", "new", seq=0, age=timedelta(hours=3), by="maker", from_stage=None, kind="create")
    heartbeat(
        db,
        "chk-1",
        "checker",
        ago=timedelta(hours=1),
        bets=[{"bet_id": "b1", "seq": 0, "outcome": "deferred", "error": None}],
    )
    put_bet(db, "b2", "new", seq=0, age=timedelta(hours=1), by="maker", from_stage=None, kind="create")
    # When the stranded audit runs
    [finding] = stranded_findings(registry(), protocols, db, NOW)
    # Then the poller of the stage must act, and the finding says who did what last
    assert (finding.kind, finding.agent, finding.dedupe_key) == (
        FindingKind.PAST_SLA,
        "checker",
        "stranded:sla:b1:0",
    )
    assert "waited 3.0h at new (SLA 2.0h)" in finding.title
    assert "last moved by maker (create (new) -> new: looks good)" in finding.title
    assert "last touched by checker in heartbeat chk-1: deferred" in finding.title
    assert finding.detail["last_transition"]["agent"] == "maker"
    assert finding.detail["last_heartbeat"]["heartbeat_id"] == "chk-1"
    assert finding.detail["bet_id"] == "b1" and finding.detail["seq"] == 0


def test_the_protocols_can_override_an_sla(db: Database[Any], tmp_path: Path) -> None:
    put_bet(db, "b1", "new", seq=0, age=timedelta(hours=3), by="maker", from_stage=None, kind="create")
    loaded = protocols_with(tmp_path, stage_sla_hours={"new": 5})
    assert stranded_findings(registry(), loaded, db, NOW) == []


def test_finished_bets_and_lagging_projections_are_not_stranded(
    db: Database[Any], protocols: LoadedProtocols
) -> None:
    put_bet(db, "done1", "done", seq=2, age=timedelta(days=30), by="shipper", from_stage="checked")
    # A projection left behind by its writer: the record at seq 2 shows the bet moved on
    put_bet(db, "lag1", "checked", seq=1, age=timedelta(hours=9))
    record(db, "lag1", 2, "checked", "done", by="shipper", at=NOW)
    assert stranded_findings(registry(), protocols, db, NOW) == []


# --- stranded: claims, failures, oscillation ------------------------------------------------


def test_a_claim_that_expired_unreleased(db: Database[Any], protocols: LoadedProtocols) -> None:
    put_bet(db, "b1", "checked")
    claim(db, "b1", 1, 0, by="shipper", expires_in=-timedelta(minutes=1))
    [finding] = stranded_findings(registry(), protocols, db, NOW)
    assert (finding.kind, finding.agent) == (FindingKind.CLAIM_EXPIRED, "shipper")
    assert finding.dedupe_key == "stranded:claim-expired:b1:1"
    assert finding.detail["claim_id"] == "b1:1:0"
    assert "shipper's claim expired unreleased" in finding.title


@pytest.mark.parametrize(
    "claims",
    [
        [(1, 0, -1, True)],  # released
        [(1, 0, +1, False)],  # still live
        [(0, 0, -1, False)],  # for an earlier seq: the bet moved since
        [(1, 0, -1, False), (1, 1, -1, True)],  # taken over and released
    ],
)
def test_claims_that_are_fine(db: Database[Any], protocols: LoadedProtocols, claims: list[Any]) -> None:
    put_bet(db, "b1", "checked")
    for seq, n, minutes, released in claims:
        claim(db, "b1", seq, n, by="shipper", expires_in=timedelta(minutes=minutes), released=released)
    assert stranded_findings(registry(), protocols, db, NOW) == []


def test_repeated_failures_at_the_current_seq(db: Database[Any], protocols: LoadedProtocols) -> None:
    put_bet(db, "b1", "checked")
    put_bet(db, "b2", "checked")
    for _ in range(3):
        failure(db, "b1", 1, by="shipper", error="hosting API timeout")
    for _ in range(5):
        failure(db, "b2", 0)  # before its last transition: they do not count
    failure(db, "b2", 1, by="shipper")
    [finding] = stranded_findings(registry(), protocols, db, NOW)
    assert (finding.kind, finding.agent, finding.dedupe_key) == (
        FindingKind.REPEATED_FAILURES,
        "shipper",
        "stranded:failures:b1:1",
    )
    assert "failed 3 times in a row (limit 3)" in finding.title
    assert finding.detail["last_error"] == "hosting API timeout"


def test_an_agent_that_keeps_deferring_a_bet(db: Database[Any], protocols: LoadedProtocols) -> None:
    # Given a bet the shipper looked at in 3 heartbeats without moving it
    put_bet(db, "b1", "checked")
    for i, outcome in enumerate(["deferred", "failed", "deferred"]):
        entries = [
            {"bet_id": "b1", "seq": 1, "outcome": outcome, "error": None},
            {"bet_id": "other", "seq": 4, "outcome": "advanced", "to_stage": "done"},
        ]
        heartbeat(db, f"shp-{i}", "shipper", ago=timedelta(minutes=50 - i), bets=entries)
    # And a bet deferred twice now and once before its last transition
    put_bet(db, "b2", "checked")
    for i, seq in enumerate([0, 1, 1]):
        heartbeat(
            db,
            f"b2-{i}",
            "shipper",
            ago=timedelta(minutes=40 - i),
            bets=[{"bet_id": "b2", "seq": seq, "outcome": "deferred"}],
        )
    # When the stranded audit runs
    [finding] = stranded_findings(registry(), protocols, db, NOW)
    # Then only the first bet oscillates
    assert (finding.kind, finding.agent) == (FindingKind.OSCILLATING, "shipper")
    assert finding.dedupe_key == "stranded:oscillating:b1:1:shipper"
    assert finding.detail["heartbeat_ids"] == ["shp-0", "shp-1", "shp-2"]
    assert finding.detail["last_heartbeat"]["outcome"] == "deferred"


# --- stranded: dead ends ------------------------------------------------------------------


def test_bets_at_stages_nobody_can_move_them_from(db: Database[Any], protocols: LoadedProtocols) -> None:
    put_bet(db, "in-limbo", "limbo", by="checker", kind="park")
    put_bet(db, "orphaned", "orphan", by="checker", kind="park")
    put_bet(db, "gone", "vanished", by="checker")
    findings = {f.detail["bet_id"]: f for f in stranded_findings(registry(), protocols, db, NOW)}
    assert {key: f.kind for key, f in findings.items()} == dict.fromkeys(findings, FindingKind.DEAD_END)
    assert findings["in-limbo"].detail["why"] == "no edge leaves this stage"
    assert findings["orphaned"].detail["why"] == "no agent polls this stage"
    assert findings["gone"].detail["why"] == "the pipeline no longer has this stage"
    assert {f.agent for f in findings.values()} == {"checker"}  # the one who put them there
    assert findings["gone"].dedupe_key == "stranded:dead-end:gone:vanished"


def test_unreadable_projections_are_skipped(db: Database[Any], protocols: LoadedProtocols) -> None:
    db[BETS].insert_one({"_id": "bad", "stage": "new", "seq": "one"})
    assert stranded_findings(registry(), protocols, db, NOW) == []


# --- filing -------------------------------------------------------------------------------


def test_findings_become_tasks_that_close_themselves(db: Database[Any], protocols: LoadedProtocols) -> None:
    board = Board(db)
    put_bet(db, "b1", "new", seq=0, age=timedelta(hours=3), by="maker", from_stage=None, kind="create")
    put_bet(db, "b2", "checked", age=timedelta(hours=5))
    # When the audit files its findings twice
    findings = stranded_findings(registry(), protocols, db, NOW)
    assert file_findings(board, findings, Origin.STRANDED, "ceo") == (2, 0)
    assert file_findings(board, stranded_findings(registry(), protocols, db, NOW), "stranded", "ceo") == (
        0,
        0,
    )
    # Then each agent that must act has one task, with the finding in its detail
    [task] = board.open_for("checker")
    assert task.dedupe_key == "stranded:sla:b1:0" and task.detail["kind"] == "past_sla"
    assert task.detail["last_transition"]["agent"] == "maker"
    assert [t.dedupe_key for t in board.open_for("shipper")] == ["stranded:sla:b2:1"]
    # When b1 moves on and the audit runs again
    db[BETS].update_one({"_id": "b1"}, {"$set": {"stage": "checked", "seq": 1, "updated_at": NOW}})
    record(db, "b1", 1, "new", "checked", by="checker", at=NOW)
    again = stranded_findings(registry(), protocols, db, NOW)
    # Then its task closes itself and the other stays open
    assert file_findings(board, again, Origin.STRANDED, "ceo") == (0, 1)
    assert board.open_for("checker") == []
    assert board.history(task.task_id)[-1]["kind"] == "auto_closed"
    assert len(board.open_for("shipper")) == 1


def test_drift_filing_leaves_stranded_tasks_alone(db: Database[Any], protocols: LoadedProtocols) -> None:
    board = Board(db)
    put_bet(db, "b2", "checked", age=timedelta(hours=5))
    file_findings(board, stranded_findings(registry(), protocols, db, NOW), Origin.STRANDED, "ceo")
    drift = drift_findings(registry(shipper="1.0"), protocols, db, NOW)
    assert file_findings(board, drift, Origin.DRIFT, "ceo") == (1, 0)
    assert file_findings(board, [], Origin.DRIFT, "ceo") == (0, 1)
    assert [t.origin for t in board.open_tasks()] == [Origin.STRANDED]


# --- which rules touched a bet ------------------------------------------------------------


def test_protocol_versions_for_a_bet(db: Database[Any]) -> None:
    record(
        db,
        "b1",
        0,
        None,
        "new",
        by="maker",
        kind="create",
        at=NOW - timedelta(days=20),
        version="1.0",
        hash_="h10",
    )
    heartbeat(
        db,
        "chk-1",
        "checker",
        ago=timedelta(days=1),
        hash_="h11",
        version="1.1",
        bets=[{"bet_id": "b1", "seq": 0, "outcome": "advanced", "to_stage": "checked"}],
    )
    record(db, "b1", 1, "new", "checked", by="checker", at=NOW - timedelta(days=1) + timedelta(seconds=2))
    heartbeat(db, "other", "checker", ago=timedelta(hours=1), bets=[{"bet_id": "b9", "seq": 0}])
    entries = protocol_versions_for_bet(db, "b1")
    assert [(e["source"], e["agent"], e["protocol_version"], e["protocol_hash"]) for e in entries] == [
        ("transition", "maker", "1.0", "h10"),
        ("heartbeat", "checker", "1.1", "h11"),
        ("transition", "checker", "1.1", "h11"),
    ]
    assert entries[0]["what"] == "create (new) -> new"
    assert entries[1]["what"] == "advanced" and entries[1]["heartbeat_id"] == "chk-1"


def test_an_unreachable_store_is_transient(stack: Any, protocols: LoadedProtocols) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient("mongodb://127.0.0.1:9/", serverSelectionTimeoutMS=200)
    try:
        with pytest.raises(LedgerUnavailable, match="audit: store unavailable"):
            stranded_findings(registry(), protocols, client["fleet_test"], NOW)
    finally:
        client.close()
