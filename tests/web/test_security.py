"""Every path needs the console's credentials; every POST needs the page's token; refusals change nothing."""

from __future__ import annotations

import pytest
import redis as redis_lib
from pymongo.database import Database
from starlette.testclient import TestClient

from fleet.board import Board
from fleet.errors import WebConsoleError
from fleet.settings import Settings
from fleet.store import Document
from fleet.web.command import check_bind

from .conftest import PASSWORD, USER, Seeded, basic, close_url, csrf_token, queued_keys

PATHS = [
    "/",
    "/pipeline",
    "/pipeline/live",
    "/bets",
    "/bets/x",
    "/agents",
    "/board",
    "/schedule",
    "/metrics",
    "/static/htmx.min.js",
    "/no-such-page",
]


@pytest.mark.parametrize("path", PATHS)
def test_every_path_needs_credentials(anonymous: TestClient, path: str) -> None:
    response = anonymous.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="fleet"')


@pytest.mark.parametrize(
    "headers",
    [
        basic(USER, "wrong"),
        basic("someone", PASSWORD),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer x"},
    ],
)
def test_wrong_credentials_are_refused(anonymous: TestClient, headers: dict[str, str]) -> None:
    assert anonymous.get("/pipeline", headers=headers).status_code == 401


def test_posts_need_credentials_and_change_nothing(
    anonymous: TestClient, seeded: Seeded, db: Database[Document], redis: redis_lib.Redis
) -> None:
    agent = seeded.registry.names()[0]
    assert anonymous.post(f"/agents/{agent}/trigger").status_code == 401
    assert anonymous.post(close_url(seeded.task_id), data={"reason": "x"}).status_code == 401
    assert Board(db).get(seeded.task_id).is_open
    assert queued_keys(redis) == []


def test_a_post_without_the_token_is_refused_and_changes_nothing(
    client: TestClient, seeded: Seeded, db: Database[Document], redis: redis_lib.Redis
) -> None:
    agent = seeded.registry.names()[0]
    for token in (None, "", "0" * 64):
        form = {"reason": "done"} if token is None else {"reason": "done", "csrf_token": token}
        closed = client.post(close_url(seeded.task_id), data=form)
        assert closed.status_code == 403 and "reload the page" in closed.text
        sent = client.post(f"/agents/{agent}/trigger", data={} if token is None else {"csrf_token": token})
        assert sent.status_code == 403
    assert Board(db).get(seeded.task_id).is_open
    assert queued_keys(redis) == []  # no heartbeat was queued


def test_a_token_from_another_server_process_is_refused(
    client: TestClient, seeded: Seeded, web_settings: Settings, db: Database[Document]
) -> None:
    from fleet.web.app import create_app

    with TestClient(create_app(web_settings), headers=basic(USER, PASSWORD)) as other:
        foreign = csrf_token(other.get("/board").text)
    response = client.post(close_url(seeded.task_id), data={"reason": "x", "csrf_token": foreign})
    assert response.status_code == 403
    assert Board(db).get(seeded.task_id).is_open


def test_pages_cannot_be_framed(client: TestClient, db: Database[Document]) -> None:
    headers = client.get("/pipeline").headers
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_the_default_password_is_refused_off_loopback(web_settings: Settings) -> None:
    check_bind(web_settings.model_copy(update={"web_password": "fleet", "web_host": "127.0.0.1"}))
    check_bind(web_settings.model_copy(update={"web_host": "0.0.0.0"}))  # a real password: allowed
    with pytest.raises(WebConsoleError, match="FLEET_WEB_PASSWORD"):
        check_bind(web_settings.model_copy(update={"web_password": "fleet", "web_host": "0.0.0.0"}))
