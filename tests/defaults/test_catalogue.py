"""The default catalogue: 52 agents that load, cover the pipeline and fit the Procfile and schedule."""

from __future__ import annotations

from collections import Counter

import pytest

from fleet.agents.handlers import resolve_handler
from fleet.app.schedule import all_start_minutes, load_report, peak_running
from fleet.defaults.catalogue import QUEUES
from fleet.definitions.catalogue import Registry, load_registry

from ..conftest import ROOT

#: The seed's fleet: these groups, each with at least one agent.
SEED_GROUPS = {"sourcing", "validation", "build", "ads", "outreach", "content", "infra", "ops"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(None, None)


def procfile_queues() -> set[str]:
    """Queues served by the Procfile's worker lines (``name: celery -A fleet worker -Q a,b ...``)."""
    served: set[str] = set()
    for line in (ROOT / "Procfile").read_text().splitlines():
        _, _, command = line.partition(":")
        words = command.split()
        if words[:4] == ["celery", "-A", "fleet", "worker"] and "-Q" in words:
            served |= set(words[words.index("-Q") + 1].split(","))
    return served


def test_the_default_catalogue_loads_with_52_agents(registry: Registry) -> None:
    assert len(registry) == 52
    assert len(set(registry.names())) == 52


def test_every_pipeline_edge_is_owned_by_exactly_one_agent(registry: Registry) -> None:
    claimed = Counter(edge for spec in registry for edge in spec.owns)
    edges = [t.edge for t in registry.pipeline.transitions]
    assert {edge: claimed[edge] for edge in edges} == dict.fromkeys(edges, 1)
    assert set(claimed) == set(edges)


def test_every_creator_has_a_spec_that_creates_bets(registry: Registry) -> None:
    creators = {spec.name for spec in registry if spec.creates}
    assert creators == set(registry.pipeline.creators)


def test_every_queue_is_served_by_a_procfile_worker(registry: Registry) -> None:
    used = {spec.queue for spec in registry}
    assert used <= set(registry.queues()) == set(QUEUES)
    assert set(QUEUES) <= procfile_queues()


def test_every_handler_imports(registry: Registry) -> None:
    for spec in registry:
        assert callable(resolve_handler(spec)), spec.name


def test_agents_outside_the_pipeline_own_and_poll_nothing(registry: Registry) -> None:
    # Given the agents the pipeline does not name (content, infra, outreach, helpers, ops)
    outside = [spec for spec in registry if spec.name not in registry.pipeline.owners()]
    # Then they are most of the fleet, and none of them can move a stage
    assert len(outside) == 52 - len(registry.pipeline.owners())
    assert all(spec.owns == () and spec.polls == () and not spec.creates for spec in outside)


def test_the_fleet_covers_the_seed_groups_with_the_ceo_and_a_watchdog_in_ops(registry: Registry) -> None:
    assert {spec.group for spec in registry} == SEED_GROUPS
    assert all(spec.queue == spec.group for spec in registry)
    ops = {spec.name: spec.handler for spec in registry if spec.group == "ops"}
    assert ops == {"ceo": "fleet.ops.ceo:ceo", "ops_watchdog": "fleet.ops.ceo:watchdog"}


def test_every_agent_says_what_it_does_and_how_long_it_takes(registry: Registry) -> None:
    for spec in registry:
        assert spec.role, spec.name
        assert 0 < spec.expected_seconds <= spec.time_limit, spec.name


def test_content_and_infrastructure_run_at_different_hours(registry: Registry) -> None:
    starts = all_start_minutes(registry)

    def hours(group: str) -> set[int]:
        return {m // 60 for spec in registry if spec.group == group for m in starts[spec.name]}

    assert hours("content") and hours("infra")
    assert not hours("content") & hours("infra")


def test_the_staggered_peak_is_at_most_10_while_fixed_intervals_pile_up(registry: Registry) -> None:
    # Given the default schedule, and the same fleet on plain fixed intervals
    staggered = peak_running(load_report(registry))
    naive = peak_running(load_report(registry, naive=True))
    # Then staggering keeps the peak under 10 and far below the thundering herd
    assert staggered <= 10
    assert naive >= 3 * staggered and naive > 10
