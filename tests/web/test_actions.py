"""Operator actions: an ad-hoc heartbeat lands on the agent's queue; a task closes with a reason."""

from __future__ import annotations

import json

import redis as redis_lib
from pymongo.database import Database
from starlette.testclient import TestClient

from fleet.board import Board
from fleet.store import Document

from .conftest import Seeded, close_url, csrf_token, queued_keys


def test_the_trigger_button_puts_a_heartbeat_on_the_agents_queue(
    client: TestClient, seeded: Seeded, redis: redis_lib.Redis
) -> None:
    spec = next(iter(seeded.registry))
    token = csrf_token(client.get("/agents").text)
    response = client.post(f"/agents/{spec.name}/trigger", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/agents?sent=")
    messages = redis.lrange(spec.queue, 0, -1)
    assert len(messages) == 1
    headers = json.loads(messages[0])["headers"]
    assert headers["task"] == "fleet.heartbeat" and spec.name in headers["argsrepr"]
    shown = client.get(response.headers["location"]).text
    assert f"sent an ad-hoc heartbeat to {spec.name}" in shown and f"queue {spec.queue}" in shown


def test_an_unknown_agent_gets_a_404_and_nothing_is_sent(
    client: TestClient, seeded: Seeded, redis: redis_lib.Redis
) -> None:
    token = csrf_token(client.get("/agents").text)
    response = client.post("/agents/nobody/trigger", data={"csrf_token": token})
    assert response.status_code == 404 and "unknown agent &#39;nobody&#39;" in response.text
    assert queued_keys(redis) == []


def test_closing_a_task_needs_a_reason_and_keeps_it(
    client: TestClient, seeded: Seeded, db: Database[Document]
) -> None:
    token = csrf_token(client.get("/board").text)
    empty = client.post(close_url(seeded.task_id), data={"csrf_token": token, "reason": "  "})
    assert empty.status_code == 400
    assert Board(db).get(seeded.task_id).is_open
    done = client.post(close_url(seeded.task_id), data={"csrf_token": token, "reason": "handled"})
    assert done.status_code == 303
    assert not Board(db).get(seeded.task_id).is_open
    assert any(e.get("note") == "handled" for e in Board(db).history(seeded.task_id))
    again = client.post(close_url(seeded.task_id), data={"csrf_token": token, "reason": "again"})
    assert again.status_code == 409 and "already closed" in again.text
    assert f'data-task="{seeded.task_id}"' not in client.get("/board").text


def test_an_oversized_post_is_refused_and_changes_nothing(
    client: TestClient, seeded: Seeded, db: Database[Document]
) -> None:
    token = csrf_token(client.get("/board").text)
    response = client.post(close_url(seeded.task_id), data={"csrf_token": token, "reason": "x" * 100_000})
    assert response.status_code == 413
    assert Board(db).get(seeded.task_id).is_open


def test_closing_an_unknown_task_is_a_404(client: TestClient, seeded: Seeded) -> None:
    token = csrf_token(client.get("/board").text)
    response = client.post("/board/nope/close", data={"csrf_token": token, "reason": "x"})
    assert response.status_code == 404
