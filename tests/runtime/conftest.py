"""Fixtures for runtime tests: the small test fleet, in-process and in real workers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.definitions.catalogue import Registry, load_registry
from fleet.ledger import Bet
from fleet.runtime.runtime import Runtime
from fleet.settings import Settings, load_settings

HERE = Path(__file__).parent
FLEETDEF = "tests.runtime.fleetdef"

#: Environment for worker subprocesses running the test fleet.
TEST_FLEET_ENV = {
    "FLEET_CATALOGUE": f"{FLEETDEF}:CATALOGUE",
    "FLEET_PIPELINE": f"{FLEETDEF}:PIPELINE",
    "FLEET_PROTOCOLS_DIR": str(HERE / "protocols"),
}


@pytest.fixture
def registry() -> Registry:
    return load_registry(TEST_FLEET_ENV["FLEET_CATALOGUE"], TEST_FLEET_ENV["FLEET_PIPELINE"])


@pytest.fixture
def settings(stack: Any) -> Settings:
    return load_settings().model_copy(update={"protocols_dir": HERE / "protocols"})


@pytest.fixture
def runtime(db: Any, redis: Any, settings: Settings, registry: Registry) -> Iterator[Runtime]:
    """An in-process runtime over the clean test database and the test fleet."""
    rt = Runtime.build(settings, registry)
    yield rt
    rt.pool.shutdown(wait=True)
    rt.bet_pool.shutdown(wait=True)


@pytest.fixture
def make_bets(runtime: Runtime) -> Callable[..., list[Bet]]:
    """Create ``n`` bets through the enforcer (as the test fleet's creator), with given fields."""

    def make(n: int = 1, **fields: Any) -> list[Bet]:
        return [runtime.enforcer.create_bet("maker", dict(fields)) for _ in range(n)]

    return make


#: The test fleet with a checker that fans its bets out (fan_out=6).
FAN_OUT_ENV = {**TEST_FLEET_ENV, "FLEET_CATALOGUE": f"{FLEETDEF}:FAN_OUT"}


@pytest.fixture
def fan_runtime(runtime: Runtime) -> Runtime:
    """The in-process runtime with the fan-out catalogue (checker: fan_out=6)."""
    runtime.registry = load_registry(FAN_OUT_ENV["FLEET_CATALOGUE"], FAN_OUT_ENV["FLEET_PIPELINE"])
    return runtime


def bet_messages(redis: Any) -> list[tuple[str, list[Any]]]:
    """(task id, args) of the bet tasks waiting in the checker's queue."""
    found = []
    for raw in redis.lrange("alpha", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "fleet.bet":
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            found.append((message["headers"]["id"], args))
    return found
