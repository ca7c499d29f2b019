"""Fixtures for the default fleet: an in-process runtime with fast retries, and bets at any stage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.definitions.catalogue import Registry, load_registry
from fleet.ledger import Bet
from fleet.runtime.runtime import Runtime
from fleet.settings import get_settings, load_settings

from ..conftest import ROOT

#: Retry policy for tests: the real protocols' attempts, with millisecond backoff.
FAST_RETRY = {"attempts": 3, "initial_delay_s": 0.01, "max_delay_s": 0.05, "jitter_s": 0.0}


@pytest.fixture
def protocols_dir(tmp_path: Path) -> Path:
    """The repository's shared protocols, with a fast retry policy."""
    data = yaml.safe_load((ROOT / "protocols" / "fleet.yaml").read_text())
    data["retry"] = FAST_RETRY
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


@pytest.fixture
def default_registry() -> Registry:
    return load_registry(None, None)


@pytest.fixture
def runtime(db: Any, redis: Any, protocols_dir: Path, default_registry: Registry) -> Iterator[Runtime]:
    """An in-process runtime of the default fleet over the clean test database."""
    settings = load_settings().model_copy(update={"protocols_dir": protocols_dir})
    rt = Runtime.build(settings, default_registry)
    yield rt
    rt.pool.shutdown(wait=True)


@pytest.fixture
def bet_at(runtime: Runtime) -> Callable[[str, str], Bet]:
    """Create bet ``bet_id`` and walk it through the owners' edges to ``stage``."""

    def make(bet_id: str, stage: str) -> Bet:
        pipeline = runtime.registry.pipeline
        bet = runtime.enforcer.create_bet(pipeline.creators[0], {"idea": bet_id}, bet_id=bet_id)
        while bet.stage != stage:
            edge = next(t for t in pipeline.edges_from(bet.stage) if t.kind == "advance")
            bet = runtime.enforcer.advance(bet_id, edge.dest, edge.owner, bet.seq, verdict="test")
        return bet

    return make


@pytest.fixture
def failing_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every simulated external call fails (``FLEET_SIM_FAILURE_RATE=1``) for one test."""
    monkeypatch.setenv("FLEET_SIM_FAILURE_RATE", "1.0")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()
