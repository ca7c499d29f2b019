"""The numbers that make heartbeats stop, expire and come back coherent with each other."""

from __future__ import annotations

from beat_schedule import build_beat_schedule
from fleet.app.celery_app import REDELIVERY_MARGIN_S, visibility_timeout
from fleet.app.schedule import DAY
from fleet.definitions.catalogue import load_registry


def test_each_agent_s_soft_limit_leaves_time_to_stop_before_its_hard_limit(registry) -> None:
    assert registry.require("checker").time_limits == (16.0, 20.0)  # a fifth of a short limit
    assert registry.require("sleeper").time_limits == (2.4, 3.0)
    default = load_registry(None, None)
    assert {spec.time_limits for spec in default if spec.time_limit == 600} == {(585.0, 600.0)}


def test_beat_sends_each_heartbeat_with_its_agent_s_limits(registry) -> None:
    entry = build_beat_schedule(registry)["heartbeat:sleeper"]
    assert (entry["options"]["soft_time_limit"], entry["options"]["time_limit"]) == (2.4, 3.0)


def test_a_dead_host_s_heartbeat_is_redelivered_before_it_expires_in_real_time() -> None:
    # Given the default fleet on a real-time day
    default = load_registry(None, None)
    expires = min(entry["options"]["expires"] for entry in build_beat_schedule(default, DAY).values())
    redelivered_after = visibility_timeout(default)
    # Then Redis redelivers an unacked heartbeat well before beat's expiry drops it
    assert redelivered_after == max(spec.time_limit for spec in default) + REDELIVERY_MARGIN_S == 1500
    assert expires == 3600 and redelivered_after < expires
