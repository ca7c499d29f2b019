"""Helpers for CLI tests: run ``fleet`` as an operator does, with the test env.

``run_cli`` runs ``python -m fleet.cli`` in a subprocess (exit codes and error lines
exactly as an operator sees them, and other ``FLEET_*`` values); ``invoke`` runs the
same app in-process with typer's CliRunner, for the many happy paths (10x faster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo.database import Database
from typer.testing import CliRunner

from fleet.cli import app
from fleet.definitions.catalogue import Registry, get_registry
from fleet.ledger import Enforcer
from fleet.store import Document

from ..conftest import ROOT

#: Wide enough that no table or message wraps in the captured output.
COLUMNS = "200"


@dataclass
class Ran:
    """A finished ``fleet`` command: exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def text(self) -> str:
        return self.out + self.err


def cli_env(**extra: str) -> dict[str, str]:
    """The test session's environment (FLEET_* set by tests/conftest.py) plus ``extra``."""
    return {**os.environ, "COLUMNS": COLUMNS, **extra}


def run_cli(*args: str, timeout: float = 60, **env: str) -> Ran:
    """Run ``python -m fleet.cli ARGS`` from the project folder and wait for it."""
    done = subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        cwd=ROOT,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def invoke(*args: str) -> Ran:
    """Run the CLI app in this process (settings as the session set them); errors propagate."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": COLUMNS}, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(ran: Ran, *fragments: str) -> str:
    """The command failed with one ``error:`` line on stderr naming ``fragments``; no traceback."""
    assert ran.code != 0, ran.text
    assert "Traceback" not in ran.text
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1, ran.err
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def counts(db: Database[Document]) -> dict[str, int]:
    """Documents per collection: equal before and after means a command changed nothing."""
    return {name: db[name].count_documents({}) for name in sorted(db.list_collection_names())}


@pytest.fixture
def registry() -> Registry:
    """The fleet the CLI subprocesses load: the built-in catalogue and pipeline."""
    return get_registry()


@pytest.fixture
def enforcer(db: Database[Document], registry: Registry) -> Enforcer:
    return Enforcer(db, registry.pipeline)
