"""Argument checking of the ``fleet.heartbeat`` task (run for real in tests/runtime)."""

from __future__ import annotations

import pytest

from fleet.errors import BadTaskArguments
from tasks.heartbeat import parse_arguments


def test_defaults_fill_in() -> None:
    assert parse_arguments(("scout",), {}) == ("scout", "scheduled", False)
    assert parse_arguments((), {"agent": "a", "reason": "adhoc", "debug": True}) == (
        "a",
        "adhoc",
        True,
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing a required argument"),
        ((1,), {}, "agent must be a non-empty string"),
        (("",), {}, "agent must be a non-empty string"),
        (("a", "weekly"), {}, "reason must be one of"),
        (("a",), {"debug": "yes"}, "debug must be true or false"),
        (("a", "adhoc", True, 4), {}, "too many positional arguments"),
        (("a",), {"colour": "red"}, "unexpected keyword argument"),
    ],
)
def test_bad_arguments_give_one_clear_error(args, kwargs, message) -> None:
    with pytest.raises(BadTaskArguments, match=message):
        parse_arguments(args, kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("a", "x" * 10_000), {}), ((), {"agent": "a", "x" * 10_000: 1}), ((["x" * 10_000],), {})],
)
def test_untrusted_arguments_are_clipped_in_the_error(args, kwargs) -> None:
    with pytest.raises(BadTaskArguments) as raised:
        parse_arguments(args, kwargs)
    assert len(str(raised.value)) < 300


def test_an_unknown_agent_of_ten_thousand_characters_is_clipped_in_its_error() -> None:
    from fleet.errors import UnknownAgent

    message = str(UnknownAgent("a" * 10_000))
    assert len(message) < 120 and "(10002 chars)" in message


def test_the_task_retry_policy_comes_from_the_protocols_file(tmp_path) -> None:
    # Given a protocols file with its own Celery-level retry numbers
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    text = (ROOT / "protocols" / "fleet.yaml").read_text()
    text = text.replace("max_retries: 5", "max_retries: 2").replace("backoff_max_s: 600", "backoff_max_s: 42")
    (tmp_path / "fleet.yaml").write_text(text)
    # When a worker process imports the heartbeat task
    code = "from tasks.heartbeat import heartbeat as h; print(h.max_retries, h.retry_backoff_max)"
    env = {**os.environ, "FLEET_PROTOCOLS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    # Then the task retries as the file says
    assert out.stdout.split() == ["2", "42"], out.stderr
