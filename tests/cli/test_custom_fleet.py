"""A fleet that is not the default one speaks its own words, and every entry point fails cleanly.

The hiring fleet of :mod:`tests.cli.hiring` is loaded through ``FLEET_PIPELINE`` and
``FLEET_CATALOGUE`` as a user would load theirs. No command's output or help may
name a stage, agent, queue or domain word of the default fleet.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib
from pymongo.database import Database

from fleet.definitions.catalogue import load_registry
from fleet.store import Document

from ..conftest import ROOT
from .conftest import Ran, assert_one_line_error, cli_env, counts, run_cli

HIRING = {
    "FLEET_PIPELINE": "tests.cli.hiring:PIPELINE",
    "FLEET_CATALOGUE": "tests.cli.hiring:CATALOGUE",
    "FLEET_PROTOCOLS_DIR": str(ROOT / "tests" / "runtime" / "protocols"),
}

#: Words of the default fleet's domain that no generic code may print.
DOMAIN_WORDS = {"idea", "ideas", "scout", "scouts", "sourcing", "landing", "killed", "parked", "52-agent"}
#: Default queue names that are also plain English the fleet uses for itself ("build FerretDB",
#: "content hash"), and the runtime's own queue that every fleet has.
GENERIC_WORDS = {"build", "content", "ops"}


def default_words() -> set[str]:
    """Every stage, agent and queue name of the default fleet, and its domain words."""
    default = load_registry(None, None)
    names = {s.name for s in default.pipeline.stages} | set(default.names()) | set(default.queues())
    return (names | DOMAIN_WORDS) - GENERIC_WORDS


def leaked(text: str) -> list[str]:
    """The default fleet's words found in ``text`` (whole words only)."""
    return sorted(
        w for w in default_words() if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text.lower())
    )


def hiring(*args: str) -> Ran:
    return run_cli(*args, **HIRING)


HELP_COMMANDS = [
    [],
    ["status"],
    ["bets"],
    ["bet"],
    ["seed"],
    ["trigger"],
    ["up"],
    ["demo"],
    ["agents"],
    ["schedule"],
    ["pipeline"],
    ["audit"],
    ["verify"],
    ["prune"],
    ["doctor"],
    ["board"],
    ["board", "close"],
    ["services"],
    ["services", "install"],
]


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: "-".join(c) or "fleet")
def test_help_names_no_default_fleet_word(command: list[str]) -> None:
    ran = hiring(*command, "--help")
    assert ran.code == 0, ran.text
    assert leaked(ran.text) == []


def test_every_command_speaks_the_pipelines_words(db: Database[Document], redis: redis_lib.Redis) -> None:
    # Given two candidates seeded with the pipeline's own fields
    seeded = hiring("seed", "2")
    assert seeded.code == 0, seeded.text
    assert "2 candidate(s) created by recruiter" in seeded.out and "applicant 1" in seeded.out
    bet_id = hiring("bets", "--json").json()["bets"][0]["bet_id"]
    # When the operator runs every read command
    runs = {
        "status": hiring("status"),
        "bets": hiring("bets"),
        "bet": hiring("bet", bet_id),
        "agents": hiring("agents"),
        "schedule": hiring("schedule"),
        "pipeline": hiring("pipeline"),
        "board": hiring("board"),
        "audit": hiring("audit"),
        "verify": hiring("verify"),
        "prune": hiring("prune", "--dry-run"),
        "doctor": hiring("doctor"),
        "trigger": hiring("trigger", "screener"),
    }
    # Then each speaks of candidates and the hiring stages, never of the default fleet
    for name, ran in {"seed": seeded, **runs}.items():
        assert leaked(ran.text) == [], (name, ran.text)
    assert "candidates per stage" in runs["status"].out and "on_hold" in runs["status"].out
    assert "2 of 2 candidate(s)" in runs["bets"].out
    assert runs["bet"].out.startswith(f"candidate {bet_id} at applied")


def test_seed_fields_come_from_a_flag_or_neutral_defaults(db: Database[Document]) -> None:
    flagged = hiring("seed", "1", "--field", "role=engineer #{n}", "--json")
    assert flagged.code == 0, flagged.text
    [created] = flagged.json()["created"]
    assert created["fields"]["role"] == "engineer #1" and "name" not in created["fields"]
    assert_one_line_error(hiring("seed", "1", "--field", "novalue"), "--field must be KEY=VALUE")


def test_a_non_creator_is_refused_in_the_pipelines_words(db: Database[Document]) -> None:
    before = counts(db)
    line = assert_one_line_error(hiring("seed", "1", "--agent", "screener"), "cannot create candidates")
    assert "creators: recruiter" in line and leaked(line) == []
    assert counts(db) == before


# --- every Celery entry point refuses a bad configuration in one line ----------------------


def cycle_pipeline(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "cycle.yaml"
    path.write_text(
        "name: loop\ninitial_stage: a\ncreators: [x]\n"
        "stages: [{name: a}, {name: b}, {name: z, terminal: true}]\n"
        "transitions: [{from: a, to: b, owner: x}, {from: b, to: a, owner: x}, {from: b, to: z, owner: x}]\n"
    )
    return {"FLEET_PIPELINE": str(path)}


def missing_catalogue(tmp_path: Path) -> dict[str, str]:
    return {**HIRING, "FLEET_CATALOGUE": "no_such_module:CATALOGUE"}


def broken_protocols(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "fleet.yaml").write_text("version: [unclosed\n")
    return {"FLEET_PROTOCOLS_DIR": str(tmp_path)}


def oversized_protocols(tmp_path: Path) -> dict[str, str]:
    text = (ROOT / "protocols" / "fleet.yaml").read_text()
    (tmp_path / "fleet.yaml").write_text(text)
    return {"FLEET_PROTOCOLS_DIR": str(tmp_path), "FLEET_PROTOCOLS_MAX_BYTES": str(len(text) - 1)}


def bad_setting(tmp_path: Path) -> dict[str, str]:
    return {"FLEET_DAY_SECONDS": "soon"}


BAD_CONFIGS = {
    "pipeline-cycle": (cycle_pipeline, ["FLEET_PIPELINE", "advance edges form a cycle: a -> b -> a"]),
    "catalogue-missing": (missing_catalogue, ["FLEET_CATALOGUE", "no_such_module"]),
    "protocols-invalid": (broken_protocols, ["FLEET_PROTOCOLS_DIR", "not valid YAML"]),
    "protocols-oversized": (
        oversized_protocols,
        ["FLEET_PROTOCOLS_DIR", "too large", "FLEET_PROTOCOLS_MAX_BYTES"],
    ),
    "setting": (bad_setting, ["FLEET_DAY_SECONDS"]),
}
ENTRY_POINTS = {
    "worker": ["worker", "-Q", "ops"],
    "beat": ["beat"],
    "flower": ["flower", "--port=0"],
    "call": ["call", "fleet.heartbeat", "--args", '["screener"]'],
}


@pytest.mark.parametrize("config", BAD_CONFIGS)
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_celery_entry_points_refuse_a_bad_configuration_in_one_line(
    tmp_path: Path, entry: str, config: str
) -> None:
    make_env, fragments = BAD_CONFIGS[config]
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "fleet", *ENTRY_POINTS[entry]],
        cwd=ROOT,
        env=cli_env(**make_env(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_error(Ran(done.returncode, done.stdout, done.stderr), *fragments)
    assert done.returncode == 2
