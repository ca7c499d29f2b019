"""Webhook agents: the payload POSTed with the token, a JSON decision back, retries per the protocols."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pymongo.database import Database

from fleet.constants import FAILURES
from fleet.defaults.catalogue import CATALOGUE
from fleet.definitions.catalogue import Registry, validate_catalogue
from fleet.definitions.pipeline import load_pipeline
from fleet.ledger import Bet
from fleet.mcp.tokens import verify
from fleet.runtime.heartbeat import run_heartbeat
from fleet.runtime.records import HeartbeatRecord
from fleet.runtime.runtime import Runtime
from fleet.settings import get_settings, load_settings
from fleet.store import Document
from tests.mcp.test_command_agents import GATE

pytestmark = pytest.mark.usefixtures("agent_env")


@dataclass
class Hook:
    """A real HTTP service answering with ``failures`` 503s first, then ``answer``."""

    failures: int
    answer: tuple[int, str]
    received: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook(failures=0, answer=(200, "{}"))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(json.loads(body))
            state.auth.append(self.headers.get("Authorization", ""))
            status, text = (503, "busy") if len(state.received) <= state.failures else state.answer
            self.send_response(status)
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args: Any) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/decide"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def registry_with(url: str) -> Registry:
    data = copy.deepcopy(CATALOGUE)
    for spec in data["agents"]:
        if spec["name"] == GATE:
            spec["handler"] = {"webhook": url, "timeout_s": 10}
    return validate_catalogue(data, load_pipeline(None), "test")


def heartbeat(url: str) -> tuple[HeartbeatRecord, Runtime]:
    runtime = Runtime.build(load_settings(), registry_with(url))
    try:
        return run_heartbeat(runtime, GATE, "adhoc"), runtime
    finally:
        runtime.pool.shutdown(wait=True)
        runtime.bet_pool.shutdown(wait=True)


def test_a_webhook_decision_is_committed(hook: Hook, bet: Bet, redis: Any) -> None:
    hook.answer = (200, json.dumps({"to_stage": "source_validated", "verdict": "pass", "evidence": {"w": 1}}))
    record, runtime = heartbeat(hook.url)
    assert record.status == "ok" and record.bets[0]["outcome"] == "advanced"
    assert runtime.enforcer.get(bet.bet_id).stage == "source_validated"
    (payload,) = hook.received
    assert payload["bet"]["bet_id"] == bet.bet_id and payload["protocols"]["version"] == "1.0"
    identity = verify(get_settings(), hook.auth[0].removeprefix("Bearer "))
    assert identity.agent == GATE and identity.bets == frozenset({bet.bet_id})


def test_a_webhook_failing_three_times_is_retried_and_the_bet_stays(
    hook: Hook, bet: Bet, redis: Any, db: Database[Document]
) -> None:
    hook.failures = 3
    record, runtime = heartbeat(hook.url)
    assert len(hook.received) == 3  # the protocols' 3 attempts
    assert record.actions.get("retries") == 2 and record.bets[0]["outcome"] == "failed"
    assert "after 3 attempts" in record.bets[0]["error"]
    assert runtime.enforcer.get(bet.bet_id).seq == 0
    assert db[FAILURES].count_documents({"bet_id": bet.bet_id}) == 1


def test_a_webhook_that_recovers_within_the_retries_moves_the_bet(hook: Hook, bet: Bet, redis: Any) -> None:
    hook.failures = 2
    hook.answer = (200, json.dumps({"to_stage": "killed", "verdict": "fail"}))
    record, runtime = heartbeat(hook.url)
    assert len(hook.received) == 3 and record.bets[0]["outcome"] == "killed"
    assert runtime.enforcer.get(bet.bet_id).stage == "killed"


@pytest.mark.parametrize("answer", [(200, "looks good to me"), (400, "bad request"), (200, '{"verdict": 3}')])
def test_a_bad_answer_is_a_permanent_failure_not_retried(
    hook: Hook, bet: Bet, redis: Any, answer: tuple[int, str]
) -> None:
    hook.answer = answer
    record, runtime = heartbeat(hook.url)
    assert len(hook.received) == 1 and record.bets[0]["outcome"] == "failed"
    assert runtime.enforcer.get(bet.bet_id).seq == 0
