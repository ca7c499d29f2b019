"""Every error an operator can meet is one clear line, a non-zero exit code, and no change.

All run as subprocesses: ``main()`` is what turns errors into one line.
"""

from __future__ import annotations

import pytest
import redis as redis_lib
from pymongo.database import Database

from fleet.definitions.catalogue import Registry
from fleet.ops.services import free_port
from fleet.store import Document

from .conftest import assert_one_line_error, counts, run_cli


def all_queues_empty(redis: redis_lib.Redis, registry: Registry) -> bool:
    return all(redis.llen(queue) == 0 for queue in {"ops", *registry.queues()})


def test_trigger_of_an_unknown_agent_sends_nothing(
    db: Database[Document], redis: redis_lib.Redis, registry: Registry
) -> None:
    assert_one_line_error(run_cli("trigger", "no_such_agent"), "unknown agent 'no_such_agent'")
    assert all_queues_empty(redis, registry)


def test_an_unknown_bet_id(db: Database[Document]) -> None:
    assert_one_line_error(run_cli("bet", "no-such-bet", "--json"), "unknown bet 'no-such-bet'")
    assert_one_line_error(run_cli("verify", "--bet", "no-such-bet"), "unknown bet 'no-such-bet'")


def test_a_stage_name_the_pipeline_lacks(db: Database[Document], registry: Registry) -> None:
    line = assert_one_line_error(run_cli("bets", "--stage", "nope", "--json"), "unknown stage 'nope'")
    assert registry.pipeline.initial_stage in line  # the message lists the stages there are


@pytest.mark.parametrize("n", ["0", "-3"])
def test_seed_needs_at_least_one_bet(db: Database[Document], n: str) -> None:
    before = counts(db)
    assert_one_line_error(run_cli("seed", n), f"N must be at least 1, got {n}")
    assert counts(db) == before


def test_seed_refuses_more_than_its_maximum_before_creating_anything(db: Database[Document]) -> None:
    before = counts(db)
    assert_one_line_error(run_cli("seed", "1000000000"), "N must be at most 10000, got 1000000000")
    assert counts(db) == before


@pytest.mark.parametrize(
    "args",
    [["bets", "--limit", "0"], ["board", "--limit", "-1"], ["status", "--interval", "0"]],
    ids=["bets-limit", "board-limit", "status-interval"],
)
def test_out_of_range_options(db: Database[Document], args: list[str]) -> None:
    assert_one_line_error(run_cli(*args), args[1])


def test_board_close_needs_a_reason(db: Database[Document]) -> None:
    assert_one_line_error(run_cli("board", "close", "x#0", "--reason", " "), "--reason")


@pytest.mark.parametrize("args", [["status", "--json"], ["seed", "1"], ["bet", "some-bet"]])
def test_an_unreachable_store(stack: object, args: list[str]) -> None:
    closed = f"mongodb://127.0.0.1:{free_port()}/"
    assert_one_line_error(run_cli(*args, FLEET_MONGO_URL=closed), "FLEET_MONGO_URL", "cannot reach")


@pytest.mark.parametrize("args", [["status"], ["trigger", "ceo", "--json"]])
def test_an_unreachable_broker(db: Database[Document], args: list[str]) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    assert_one_line_error(run_cli(*args, FLEET_BROKER_URL=closed), "FLEET_BROKER_URL", "cannot reach")


def test_celery_call_with_the_broker_down_is_one_line_and_gives_up_soon(stack: object) -> None:
    import subprocess
    import sys

    from fleet.app.celery_app import make_app
    from fleet.settings import load_settings

    from .conftest import ROOT, Ran, cli_env

    closed = f"redis://127.0.0.1:{free_port()}/0"
    cmd = [sys.executable, "-m", "celery", "-A", "fleet", "call", "fleet.probe"]
    done = subprocess.run(cmd, cwd=ROOT, env=cli_env(FLEET_BROKER_URL=closed), capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert_one_line_error(Ran(done.returncode, done.stdout, done.stderr), "FLEET_BROKER_URL", "cannot reach")
    # Few reconnects to the result store (Celery's default is 20, one second apart)
    policy = make_app(load_settings()).conf.result_backend_transport_options["retry_policy"]
    assert policy["max_retries"] <= 2 and policy["interval_max"] <= 1


@pytest.mark.parametrize(
    ("variable", "value", "args"),
    [
        ("FLEET_MONGO_URL", "http://127.0.0.1:27017/", ["status"]),
        ("FLEET_MONGO_URL", "mongodb://a:b:c@@/x?foo", ["bets"]),
        ("FLEET_BROKER_URL", "amqp://127.0.0.1/", ["trigger", "ceo"]),
        ("FLEET_DAY_SECONDS", "soon", ["schedule"]),
    ],
    ids=["mongo-scheme", "mongo-unparseable", "broker-scheme", "not-a-number"],
)
def test_malformed_settings(stack: object, variable: str, value: str, args: list[str]) -> None:
    line = assert_one_line_error(run_cli(*args, **{variable: value}), variable)
    assert "b:c" not in line  # a password in a bad URL is never printed


def test_protocols_that_do_not_load_stop_seeding(db: Database[Document]) -> None:
    before = counts(db)
    assert_one_line_error(run_cli("seed", "2", FLEET_PROTOCOLS_DIR="/no/such/dir"), "FLEET_PROTOCOLS_DIR")
    assert counts(db) == before


def test_usage_errors_do_not_print_a_traceback() -> None:
    ran = run_cli("bet")  # missing argument: typer's own usage message, exit 2
    assert ran.code == 2 and "Traceback" not in ran.text


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["bet"], "Missing argument"),
        (["bets", "--limt", "3"], "No such option: --limt"),
        (["status", "--interval", "soon"], "Invalid value for '--interval'"),
        (["board", "close"], "Missing argument"),
        (["no-such-command"], "No such command"),
    ],
    ids=["missing-argument", "unknown-option", "bad-value", "subcommand", "unknown-command"],
)
def test_usage_errors_are_one_line_with_exit_code_2(args: list[str], fragment: str) -> None:
    ran = run_cli(*args)
    line = assert_one_line_error(ran, fragment, "--help")
    assert ran.code == 2 and ran.out == "", line
