"""Who may speak MCP at all: every request needs a valid token, and bad tokens are a signal
of their own (counted per claimed name and source, never an agent's refusal)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.database import Database

from fleet.audit import refusal_loop_findings
from fleet.constants import HOLDS, REFUSALS, REJECTED_TOKENS
from fleet.definitions.catalogue import get_registry
from fleet.definitions.protocols import load_protocols
from fleet.errors import TokenRejected
from fleet.ledger import Bet
from fleet.mcp.client import ToolCallError
from fleet.mcp.rejections import MAX_FIELD_CHARS, OVER_LIMIT, Rejections, rejected_tokens
from fleet.mcp.tokens import MAX_CLAIMED_CHARS, mint
from fleet.settings import get_settings
from fleet.store import Document
from tests.mcp.conftest import McpServer, post, raw_token
from tests.mcp.test_server import GATE, call

FORGED_SECRET = "another-secret-another-secret-0123456789"
MOVE = {"name": "move_bet", "arguments": {"bet_id": "b1", "to_stage": "source_validated", "expected_seq": 0,
                                          "verdict": "pass"}}  # fmt: skip


def calls(db: Database[Document]) -> list[Document]:
    return list(db[REJECTED_TOKENS].find({"kind": "call"}, {"_id": 0}))


@pytest.mark.parametrize("method", ["initialize", "tools/list", "tools/call", "ping"])
def test_every_method_needs_a_token_and_gets_a_bearer_challenge(
    mcp_server: McpServer, db: Any, method: str
) -> None:
    # Given no token, a forged one, then a valid one
    bare = post(mcp_server, None, method, MOVE if method == "tools/call" else {})
    forged = post(mcp_server, raw_token({"sub": GATE}, secret=FORGED_SECRET), method)
    good = post(mcp_server, mint(mcp_server.settings, GATE, 60), "tools/list")
    # Then the first two are 401 with a Bearer challenge and no OAuth discovery
    assert (bare.status_code, forged.status_code) == (401, 401)
    assert bare.headers["www-authenticate"] == 'Bearer realm="fleet-mcp"'
    challenge = forged.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="fleet-mcp", error="invalid_token"')
    assert "bad signature" in challenge
    assert "resource_metadata" not in challenge + bare.headers["www-authenticate"]
    # And the valid token lists the tools
    assert good.status_code == 200 and "move_bet" in good.text


def test_no_oauth_discovery_is_advertised(mcp_server: McpServer, db: Any) -> None:
    import httpx

    base = mcp_server.url.rsplit("/mcp", 1)[0]
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server"):
        assert httpx.get(base + path, timeout=10).status_code in (401, 404)


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"aud": "another-server"}, "not for this server"),
        ({"iss": "someone-else"}, "unknown issuer"),
        ({"aud": None}, "aud"),
        ({"exp": 10**10}, "lifetime over"),
    ],
    ids=["wrong-aud", "wrong-iss", "no-aud", "too-long-lived"],
)
def test_the_servers_token_policy_is_enforced(mcp_server: McpServer, db: Any, claims: Any, why: str) -> None:
    claims = {"sub": GATE, **claims}
    token = raw_token({k: v for k, v in claims.items() if v is not None})
    if claims.get("aud", "") is None:
        import jwt

        body = jwt.decode(token, options={"verify_signature": False})
        body.pop("aud")
        token = jwt.encode(body, mcp_server.settings.mcp_secret.get_secret_value(),  # type: ignore[union-attr]
                           algorithm="HS256", headers={"kid": "k1"})  # fmt: skip
    with pytest.raises(ToolCallError, match=why):
        call(mcp_server, token, "whoami")


@pytest.mark.parametrize("seq", ["0", True, 1.0], ids=["string", "bool", "float"])
def test_expected_seq_must_be_a_json_integer(mcp_server: McpServer, db: Any, bet: Bet, seq: object) -> None:
    with pytest.raises(ToolCallError, match="expected_seq"):
        call(mcp_server, GATE, "move_bet", bet_id=bet.bet_id, to_stage="source_validated",
             expected_seq=seq, verdict="pass")  # fmt: skip
    assert call(mcp_server, GATE, "get_bet", bet_id=bet.bet_id)["seq"] == 0


def test_someone_claiming_an_agent_is_a_signal_not_a_refusal_loop(mcp_server: McpServer, db: Any) -> None:
    # Given 8 calls whose token claims the gate but is signed with another secret
    forged = raw_token({"sub": GATE}, secret=FORGED_SECRET)
    for _ in range(8):
        assert post(mcp_server, forged, "tools/call", MOVE).status_code == 401
    # Then none is the gate's refusal: no refusal loop, no hold
    assert db[REFUSALS].count_documents({}) == 0 and db[HOLDS].count_documents({}) == 0
    now = datetime.now(UTC)
    loaded = load_protocols(get_settings().protocols_dir)
    assert refusal_loop_findings(get_registry(), loaded, db, now) == []
    # And they are counted by claimed name and source, the claim in its own field
    assert all(doc["claimed_agent"] == GATE and "agent" not in doc for doc in calls(db))
    (row,) = rejected_tokens(db, now - timedelta(hours=1))
    assert (row.claimed_agent, row.source, row.count) == (GATE, "127.0.0.1", 8)


def test_fleet_status_shows_calls_with_a_bad_token(mcp_server: McpServer, db: Any) -> None:
    from tests.cli.conftest import run_cli

    post(mcp_server, raw_token({"sub": GATE}, secret=FORGED_SECRET), "tools/list")
    ran = run_cli("status", "--json")
    assert ran.code == 0, ran.err
    (row,) = json.loads(ran.out)["rejected_tokens"]
    assert (row["claimed_agent"], row["source"], row["count"]) == (GATE, "127.0.0.1", 1)


def test_what_an_unauthenticated_call_stores_is_length_capped(mcp_server: McpServer, db: Any) -> None:
    # Given a forged token whose sub is 60,000 characters, on a call with an oversized bet id
    huge = raw_token({"sub": "x" * 60_000}, secret=FORGED_SECRET)
    args = {**MOVE["arguments"], "bet_id": "b" * 20_000, "to_stage": "s" * 20_000}
    assert post(mcp_server, huge, "tools/call", {"name": "t" * 20_000, "arguments": args}).status_code == 401
    # Then every stored string is cut
    (doc,) = calls(db)
    assert len(doc["claimed_agent"]) == MAX_CLAIMED_CHARS
    assert max(len(doc[k]) for k in ("bet_id", "to_stage", "tool")) == MAX_FIELD_CHARS
    assert all(len(str(v)) <= 300 for v in doc.values())


def test_past_the_limit_a_source_is_counted_not_stored(db: Any) -> None:
    # Given a limit of 2 stored calls per source and minute
    rejections = Rejections(db, per_minute=2)
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
    # When one source sends 5 bad calls in that minute, and another source 1
    for _ in range(5):
        rejections.record(TokenRejected("bad signature", GATE), "10.0.0.1", {"tool": "whoami"}, now=now)
    rejections.record(TokenRejected("bad signature", GATE), "10.0.0.2", {}, now=now)
    # Then 2 + 1 are stored one by one, and every one is counted
    assert sorted(d["source"] for d in calls(db)) == ["10.0.0.1", "10.0.0.1", "10.0.0.2"]
    rows = {(r.claimed_agent, r.source): r.count for r in rejected_tokens(db, now - timedelta(hours=1))}
    assert rows == {(GATE, "10.0.0.1"): 2, (OVER_LIMIT, "10.0.0.1"): 3, (GATE, "10.0.0.2"): 1}


def test_the_server_speaks_the_newest_protocol_the_sdk_offers_as_the_readme_says(
    mcp_server: McpServer, db: Any
) -> None:
    from mcp.types import LATEST_PROTOCOL_VERSION

    from tests.conftest import ROOT

    hello = {"protocolVersion": LATEST_PROTOCOL_VERSION, "capabilities": {},
             "clientInfo": {"name": "test", "version": "0"}}  # fmt: skip
    answer = post(mcp_server, mint(mcp_server.settings, GATE, 60), "initialize", hello)
    assert answer.json()["result"]["protocolVersion"] == LATEST_PROTOCOL_VERSION
    assert f"**{LATEST_PROTOCOL_VERSION}**" in (ROOT / "README.md").read_text()


def test_concurrent_bad_calls_from_one_source_are_all_counted_and_the_limit_holds(db: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rejections = Rejections(db, per_minute=5)
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)

    def one(_: int) -> bool:
        return rejections.record(TokenRejected("bad signature", GATE), "10.0.0.9", {}, now=now)

    with ThreadPoolExecutor(8) as pool:
        stored = list(pool.map(one, range(16)))
    assert stored.count(True) == 5 and len(calls(db)) == 5
    rows = {r.claimed_agent: r.count for r in rejected_tokens(db, now - timedelta(hours=1))}
    assert rows == {GATE: 5, OVER_LIMIT: 11}
