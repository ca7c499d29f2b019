"""Bad input gets one clear 4xx page, never a traceback; a GET never writes."""

from __future__ import annotations

import pytest
from pymongo.database import Database
from starlette.testclient import TestClient

from fleet.constants import COLLECTIONS
from fleet.ops.services import free_port
from fleet.settings import Settings
from fleet.store import Document
from fleet.web.app import create_app

from .conftest import AUTH, Seeded, close_url


def snapshot(db: Database[Document]) -> dict[str, int]:
    return {name: db[name].count_documents({}) for name in COLLECTIONS}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/bets/nosuchbet", 404, "unknown bet &#39;nosuchbet&#39;"),
        ("/bets/" + "9" * 5000, 404, "unknown bet"),
        ("/bets/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, "&lt;script&gt;"),
        ("/bets/%7B%22%24gt%22%3A%22%22%7D", 404, "unknown bet"),
        ("/bets?stage=nowhere", 404, "unknown stage &#39;nowhere&#39;"),
        ("/bets?limit=0", 400, "limit must be a whole number"),
        ("/bets?limit=-5", 400, "limit must be a whole number"),
        ("/bets?limit=99999999999999999999", 400, "limit must be a whole number"),
        ("/bets?limit=abc", 400, "limit must be a whole number"),
        ("/nowhere", 404, "no such page"),
    ],
)
def test_bad_input_gets_one_clear_error_page(
    client: TestClient, seeded: Seeded, db: Database[Document], path: str, status: int, message: str
) -> None:
    before = snapshot(db)
    response = client.get(path)
    assert response.status_code == status
    assert message in response.text
    assert "Traceback" not in response.text and "<script>" not in response.text
    assert snapshot(db) == before


def test_no_get_writes(client: TestClient, seeded: Seeded, db: Database[Document]) -> None:
    before = snapshot(db)
    for path in (
        "/pipeline",
        "/pipeline/live",
        "/bets",
        f"/bets/{seeded.moved.bet_id}",
        "/agents",
        "/board",
        "/schedule",
        "/metrics",
    ):
        assert client.get(path).status_code == 200, path
    assert snapshot(db) == before


def test_a_get_on_a_post_route_is_refused(client: TestClient, seeded: Seeded) -> None:
    assert client.get(close_url(seeded.task_id)).status_code == 405


def test_an_unreachable_store_or_broker_is_a_503_page(db: Database[Document], web_settings: Settings) -> None:
    # Given a console whose store and broker URLs point at ports nothing listens on
    dead = web_settings.model_copy(
        update={
            "mongo_url": f"mongodb://127.0.0.1:{free_port()}/",
            "broker_url": f"redis://127.0.0.1:{free_port()}/0",
        }
    )
    with TestClient(create_app(dead), headers=AUTH) as client:
        # Then the pages say what is down, in one line, with 503
        store = client.get("/pipeline")
        assert store.status_code == 503 and "Traceback" not in store.text
        assert "store" in store.text.lower()
