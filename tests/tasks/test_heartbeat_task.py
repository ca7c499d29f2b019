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
