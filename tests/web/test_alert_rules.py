"""The README's Prometheus alert rules, evaluated by Prometheus's own ``promtool test rules``
with two consoles scraped (every console serves the same figures): each alert fires once,
and no rule fails on many-to-many matching."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ..conftest import ROOT

CONSOLES = ("10.0.0.1:8089", "10.0.0.2:8089")


def readme_rules() -> str:
    block = (ROOT / "README.md").read_text().split("# fleet-rules.yml\n", 1)[1]
    return block.split("```", 1)[0]


def series(name: str, labels: str, values: str) -> list[dict[str, str]]:
    return [
        {"series": f'{name}{{job="fleet",instance="{console}",{labels}}}', "values": values}
        for console in CONSOLES
    ]


def test_the_readme_alerts_fire_once_with_two_consoles_scraped(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool missing (Debian package prometheus)")
    (tmp_path / "rules.yml").write_text(readme_rules())
    unit = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    *series("fleet_stage_oldest_bet_age_seconds", 'stage="sourced"', "7200x30"),
                    *series("fleet_stage_sla_seconds", 'stage="sourced"', "3600x30"),
                    *series("fleet_stage_oldest_bet_age_seconds", 'stage="built"', "60x30"),
                    *series("fleet_stage_sla_seconds", 'stage="built"', "3600x30"),
                    *series("fleet_agent_last_heartbeat_timestamp_seconds", 'agent="gate"', "0x30"),
                    *series("fleet_agent_heartbeat_interval_seconds", 'agent="gate"', "60x30"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "FleetStagePastSLA",
                        "exp_alerts": [
                            {
                                "exp_labels": {"job": "fleet", "stage": "sourced"},
                                "exp_annotations": {"summary": "a bet waits at sourced past the stage's SLA"},
                            }
                        ],
                    },
                    {
                        "eval_time": "15m",
                        "alertname": "FleetAgentSilent",
                        "exp_alerts": [
                            {
                                "exp_labels": {"job": "fleet", "agent": "gate"},
                                "exp_annotations": {"summary": "gate has not run for two of its intervals"},
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(unit))
    ran = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "many-to-many" not in ran.stdout + ran.stderr
