"""The MCP tools through a real ``fleet mcp`` process and the SDK's streamable HTTP client."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pymongo.database import Database

from fleet.constants import REFUSALS, REJECTED_TOKENS, TRANSITIONS, USAGE
from fleet.definitions.pipeline import load_pipeline
from fleet.ledger import Bet, Enforcer
from fleet.mcp import client
from fleet.mcp.client import ToolCallError
from fleet.mcp.tokens import mint
from fleet.store import Document
from tests.mcp.conftest import McpServer, post, raw_token

SCOUT = "reddit_scout"
GATE = "source_validation_gate"
OTHER = "category_economics_gate"


@pytest.fixture
def enforcer(db: Database[Document]) -> Enforcer:
    return Enforcer(db, load_pipeline(None))


def call(server: McpServer, agent_or_token: str, tool: str, **args: Any) -> Any:
    token = agent_or_token if "." in agent_or_token else mint(server.settings, agent_or_token, 60)
    return client.call(server.url, token, tool, **args)


def refusals(db: Database[Document]) -> list[Document]:
    return list(db[REFUSALS].find({}, {"_id": 0}))


def rejected_calls(db: Database[Document]) -> list[Document]:
    """Calls refused for their token (stored apart from the agents' refusals)."""
    return list(db[REJECTED_TOKENS].find({"kind": "call"}, {"_id": 0}))


def test_an_agent_moves_a_bet_along_its_own_edge(mcp_server: McpServer, db: Any, bet: Bet) -> None:
    moved = call(mcp_server, GATE, "move_bet", bet_id=bet.bet_id, to_stage="source_validated",
                 expected_seq=0, verdict="pass", evidence={"score": 0.9})  # fmt: skip
    assert (moved["stage"], moved["seq"]) == ("source_validated", 1)
    record = db[TRANSITIONS].find_one({"_id": f"{bet.bet_id}:1"})
    assert record is not None
    assert (record["agent"], record["evidence"], record["protocol_version"]) == (GATE, {"score": 0.9}, "1.0")


def test_another_agents_edge_is_refused_recorded_and_lists_the_allowed_moves(
    mcp_server: McpServer, db: Any, enforcer: Enforcer, bet: Bet
) -> None:
    with pytest.raises(ToolCallError) as refused:
        call(
            mcp_server, OTHER, "move_bet", bet_id=bet.bet_id, to_stage="killed", expected_seq=0, verdict="no"
        )
    message = str(refused.value)
    assert "not the owner" in message and f"owner {GATE}" in message and "yours: none" in message
    assert enforcer.get(bet.bet_id).seq == 0
    (refusal,) = refusals(db)
    assert (refusal["agent"], refusal["bet_id"], refusal["error"]) == (OTHER, bet.bet_id, "NotOwner")


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (
            lambda: raw_token({"sub": GATE}, secret="another-secret-another-secret-0123456789"),
            "bad signature",
        ),
        (lambda: raw_token({"sub": GATE, "iat": 1, "exp": 2}), "expired"),
        (lambda: raw_token({"sub": GATE}, kid="k0"), "rotated"),
        (lambda: raw_token({"sub": "nobody"}), "unknown agent"),
    ],
    ids=["forged", "expired", "rotated-key", "unknown-agent"],
)
def test_a_bad_token_is_refused_recorded_and_moves_nothing(
    mcp_server: McpServer, db: Any, enforcer: Enforcer, bet: Bet, token: Any, why: str
) -> None:
    bad = token()
    with pytest.raises(ToolCallError, match=why):
        call(mcp_server, bad, "move_bet", bet_id=bet.bet_id, to_stage="source_validated",
             expected_seq=0, verdict="pass")  # fmt: skip
    # The SDK's client is refused at `initialize`; a bare `tools/call` is refused the same way
    args = {"bet_id": bet.bet_id, "to_stage": "source_validated", "expected_seq": 0, "verdict": "pass"}
    answer = post(mcp_server, bad, "tools/call", {"name": "move_bet", "arguments": args})
    assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer ")
    assert enforcer.get(bet.bet_id).seq == 0
    initialize, refusal = sorted(rejected_calls(db), key=lambda r: r["at"])
    assert (initialize["method"], refusal["method"]) == ("initialize", "tools/call")
    assert refusal["tool"] == "move_bet"
    assert refusal["bet_id"] == bet.bet_id and why in refusal["reason"]
    assert refusal["claimed_agent"] in (GATE, "nobody")  # the identity the token claimed
    assert "agent" not in refusal and refusals(db) == []  # never attributed to the agent


def test_a_missing_token_is_refused(mcp_server: McpServer, db: Any) -> None:
    async def no_token() -> Any:
        return await client.call_async(mcp_server.url, "", "whoami")

    with pytest.raises(ToolCallError, match="no bearer token"):
        anyio.run(no_token)
    assert rejected_calls(db)[0]["claimed_agent"] == "(none)" and refusals(db) == []


def test_a_scoped_token_cannot_touch_other_bets(
    mcp_server: McpServer, db: Any, enforcer: Enforcer, bet: Bet
) -> None:
    token = mint(mcp_server.settings, GATE, 60, bets=["some-other-bet"])
    with pytest.raises(ToolCallError, match="outside the token's scope"):
        call(mcp_server, token, "move_bet", bet_id=bet.bet_id, to_stage="source_validated",
             expected_seq=0, verdict="pass")  # fmt: skip
    with pytest.raises(ToolCallError, match="outside the token's scope"):
        call(mcp_server, token, "get_bet", bet_id=bet.bet_id)
    assert call(mcp_server, token, "list_waiting")["bets"] == []
    assert enforcer.get(bet.bet_id).seq == 0
    assert len(refusals(db)) == 2


def test_eight_clients_racing_one_bet_one_wins_and_the_ledger_verifies(
    mcp_server: McpServer, db: Any, enforcer: Enforcer, bet: Bet
) -> None:
    outcomes: list[str] = []

    async def one(n: int) -> None:
        token = mint(mcp_server.settings, GATE, 60, heartbeat_id=f"racer-{n}")
        try:
            args = {"bet_id": bet.bet_id, "to_stage": "source_validated", "expected_seq": 0}
            await client.call_async(mcp_server.url, token, "move_bet", verdict=f"racer {n}", **args)
            outcomes.append("won")
        except ToolCallError as exc:
            outcomes.append("stale" if "stale" in str(exc) else str(exc))

    async def race() -> None:
        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(one, n)

    anyio.run(race)
    assert sorted(outcomes) == ["stale"] * 7 + ["won"]
    assert enforcer.get(bet.bet_id).seq == 1
    assert enforcer.verify() == []


def test_reads_creation_board_and_usage(mcp_server: McpServer, db: Any, bet: Bet) -> None:
    me = call(mcp_server, GATE, "whoami")
    assert me["agent"] == GATE and me["polls"] == ["sourced"]
    waiting = call(mcp_server, GATE, "list_waiting", limit=5)
    assert [b["bet_id"] for b in waiting["bets"]] == [bet.bet_id]
    assert {m["to_stage"] for m in waiting["bets"][0]["your_moves"]} == {"source_validated", "killed"}
    seen = call(mcp_server, GATE, "get_bet", bet_id=bet.bet_id)
    assert [r["seq"] for r in seen["timeline"]] == [0]
    protocols = call(mcp_server, GATE, "read_protocols")
    assert protocols["version"] == "1.0" and "version" in protocols["text"] and len(protocols["hash"]) > 6
    with pytest.raises(ToolCallError, match="only creators may create"):
        call(mcp_server, GATE, "create_bet", fields={"idea": "y"})
    created = call(mcp_server, SCOUT, "create_bet", fields={"idea": "y"})
    assert created["stage"] == "sourced"
    filed = call(mcp_server, GATE, "file_task", assignee=OTHER, title="check this", dedupe_key="k1")
    assert filed["new"] and call(mcp_server, OTHER, "list_tasks")["tasks"][0]["title"] == "check this"
    with pytest.raises(ToolCallError, match="may close only"):
        call(mcp_server, SCOUT, "close_task", task_id=filed["task"]["task_id"], reason="no")
    closed = call(mcp_server, OTHER, "close_task", task_id=filed["task"]["task_id"], reason="done")
    assert closed["task"]["status"] == "done"
    call(mcp_server, GATE, "report_usage", tokens_in=100, tokens_out=20, cost_usd=0.01, model="m")
    assert db[USAGE].count_documents({"agent": GATE}) == 1


def test_bad_arguments_are_one_clear_error_and_change_nothing(
    mcp_server: McpServer, db: Any, enforcer: Enforcer, bet: Bet
) -> None:
    with pytest.raises(ToolCallError, match="expected_seq"):
        call(mcp_server, GATE, "move_bet", bet_id=bet.bet_id, to_stage="source_validated",
             expected_seq=-1, verdict="pass")  # fmt: skip
    with pytest.raises(ToolCallError, match="unknown bet"):
        call(mcp_server, GATE, "get_bet", bet_id="nope")
    assert enforcer.get(bet.bet_id).seq == 0


def test_the_readme_example_runs_as_written(mcp_server: McpServer, db: Any, bet: Bet) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Running real agents", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    script = block.split("<<'PY'\n", 1)[1].split("PY\n", 1)[0]
    assert "http://127.0.0.1:8765/mcp" in script  # the default FLEET_MCP_URL, swapped for the test server's
    script = script.replace("http://127.0.0.1:8765/mcp", mcp_server.url)
    token = mint(mcp_server.settings, GATE, 600)
    ran = subprocess.run(
        [sys.executable, "-", token], input=script, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert bet.bet_id in ran.stdout


def test_stdio_serves_one_local_agent_with_its_token(mcp_server: McpServer, db: Any, bet: Bet) -> None:
    import os
    import sys

    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from tests.conftest import ROOT

    token = mint(mcp_server.settings, GATE, 60)
    env = {**os.environ, "FLEET_MCP_SECRET": mcp_server.settings.mcp_secret.get_secret_value(),  # type: ignore[union-attr]
           "FLEET_MCP_TOKEN": token}  # fmt: skip
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "fleet.cli", "mcp", "--stdio"], env=env, cwd=str(ROOT)
    )

    async def move() -> Any:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            args = {"bet_id": bet.bet_id, "to_stage": "source_validated", "expected_seq": 0, "verdict": "ok"}
            return client.result_data(await session.call_tool("move_bet", args))

    assert anyio.run(move)["stage"] == "source_validated"
    record = db[TRANSITIONS].find_one({"_id": f"{bet.bet_id}:1"})
    assert record is not None and record["agent"] == GATE


def test_stdio_refuses_to_serve_with_a_bad_token(mcp_server: McpServer, db: Any) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    forged = raw_token({"sub": GATE}, secret="another-secret-another-secret-0123456789")
    env = {**os.environ, "FLEET_MCP_SECRET": mcp_server.settings.mcp_secret.get_secret_value(),  # type: ignore[union-attr]
           "FLEET_MCP_TOKEN": forged}  # fmt: skip
    ran = subprocess.run([sys.executable, "-m", "fleet.cli", "mcp", "--stdio"], cwd=ROOT, env=env,
                         input="", capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "error: token rejected: bad signature (forged or signed with another secret)"
    ]
    (rejected,) = rejected_calls(db)
    assert (rejected["source"], rejected["claimed_agent"]) == ("stdio", GATE) and refusals(db) == []
