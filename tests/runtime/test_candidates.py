"""Which bets a polling heartbeat looks at: least recently attempted first, so none starves."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.definitions.catalogue import Registry, load_registry
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.runtime import Runtime
from fleet.settings import Settings

from .conftest import FLEETDEF, TEST_FLEET_ENV


@pytest.fixture
def small_batch(db: Any, redis: Any, settings: Settings) -> Any:
    registry: Registry = load_registry(f"{FLEETDEF}:SMALL_BATCH", TEST_FLEET_ENV["FLEET_PIPELINE"])
    rt = Runtime.build(settings, registry)
    yield rt
    rt.pool.shutdown(wait=True)
    rt.bet_pool.shutdown(wait=True)


def make(rt: Runtime, n: int, **fields: Any) -> list[str]:
    return [rt.enforcer.create_bet("maker", dict(fields)).bet_id for _ in range(n)]


@pytest.mark.parametrize("behaviour", [{"verdict": "wait"}, {"crash": True}], ids=["stays", "fails"])
def test_bets_that_stay_or_fail_go_to_the_back_and_newer_bets_get_their_turn(
    small_batch: Runtime, behaviour: dict[str, Any]
) -> None:
    # Given a checker taking 2 bets per heartbeat, 2 older bets that never move, 2 newer ones
    stuck = make(small_batch, 2, **behaviour)
    fresh = make(small_batch, 2)
    # When the first heartbeat tried the older two (they stayed or failed)
    first = run_heartbeat(small_batch, "checker")
    assert {b["bet_id"] for b in first.bets} == set(stuck)
    # Then the next heartbeat takes the newer two instead of the same two again
    second = run_heartbeat(small_batch, "checker")
    assert {b["bet_id"] for b in second.bets} == set(fresh)
    assert [small_batch.enforcer.get(b).stage for b in fresh] == ["checked", "checked"]
    # And the one after that comes back to the older two
    third = run_heartbeat(small_batch, "checker")
    assert {b["bet_id"] for b in third.bets} == set(stuck)
    assert small_batch.enforcer.verify() == []
