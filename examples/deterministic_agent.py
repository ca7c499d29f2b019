"""A deterministic external agent: what an LLM session does, without the model.

fleet runs it per claimed bet with a JSON payload on stdin and ``FLEET_MCP_URL`` /
``FLEET_MCP_TOKEN`` in its environment. Modes (first argument):

- ``mcp``: read the bet through the MCP tools and move it along its first advance edge
  itself (the SDK's streamable HTTP client), printing nothing;
- ``print``: print one JSON decision for fleet to commit;
- ``create``: (an agent that polls nothing, e.g. a scout) create one bet through MCP;
- ``garbage``, ``fail``, ``hang``: misbehave (tests of the runtime's failure handling).
  ``hang PIDFILE`` starts a child that sleeps too and writes its pid to PIDFILE;
- ``spend COST [then]``: print a decision leaving the bet with a usage report of COST
  dollars, then (``then``) ``ok``, exit ``2``, or ``hang`` (the report printed first);
- ``escape PIDFILE [then]``: start ``setsid sleep 600`` (a new session, holding stdout), write
  its pid to PIDFILE, then ``hang`` or exit (``ok``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


def first_advance(payload: dict[str, Any]) -> str | None:
    moves = payload["your_moves"]
    return moves[0] if moves else None


@asynccontextmanager
async def fleet_session() -> AsyncIterator[Any]:
    """An MCP session to the fleet as this agent (URL and token from the environment)."""
    import httpx  # here, not at the top: the other modes start fast without the SDK
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {os.environ['FLEET_MCP_TOKEN']}"}
    async with (
        httpx.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(os.environ["FLEET_MCP_URL"], http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def create_via_mcp(payload: dict[str, Any]) -> None:
    async with fleet_session() as session:
        made = await session.call_tool("create_bet", {"fields": {"idea": f"from {payload['agent']}"}})
        if made.isError:
            sys.exit(f"create refused: {made.content}")


async def move_via_mcp(payload: dict[str, Any]) -> None:
    async with fleet_session() as session:
        bet_id = payload["bet"]["bet_id"]
        got = await session.call_tool("get_bet", {"bet_id": bet_id})
        bet = {} if got.isError else json.loads(got.content[0].text)  # tools answer with JSON text
        if not bet.get("your_moves"):
            sys.exit(f"cannot read the bet or no move is mine: {got.content}")
        moved = await session.call_tool("move_bet", {
            "bet_id": bet_id, "to_stage": bet["your_moves"][0]["to_stage"],
            "expected_seq": bet["seq"], "verdict": "pass (deterministic)", "evidence": {"mode": "mcp"},
        })  # fmt: skip
        if moved.isError:
            sys.exit(f"move refused: {moved.content}")
        await session.call_tool("report_usage", {"tokens_in": 0, "tokens_out": 0, "model": "deterministic"})


def main(argv: list[str]) -> None:
    mode = argv[0] if argv else "print"
    payload = json.load(sys.stdin)
    if mode == "mcp":
        asyncio.run(move_via_mcp(payload))
    elif mode == "create":
        asyncio.run(create_via_mcp(payload))
    elif mode == "print":
        usage = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "model": "deterministic"}
        evidence = {"mode": "print"}
        print(
            json.dumps(
                {"to_stage": first_advance(payload), "verdict": "pass", "evidence": evidence, "usage": usage}
            )
        )
    elif mode == "spend":
        usage = {"tokens_in": 100, "tokens_out": 10, "cost_usd": float(argv[1]), "model": "deterministic"}
        print(json.dumps({"to_stage": None, "verdict": "thinking", "usage": usage}), flush=True)
        finish(argv[2] if len(argv) > 2 else "ok")
    elif mode == "escape":
        child = subprocess.Popen(["setsid", "sleep", "600"])  # inherits stdout and stderr
        with open(argv[1], "w") as out:
            out.write(str(child.pid))
        finish(argv[2] if len(argv) > 2 else "hang")
    elif mode == "garbage":
        print("I think this bet looks great!")
    elif mode == "fail":
        sys.exit("deterministic agent: failing on purpose")
    elif mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(argv[1], "w") as out:
            out.write(str(child.pid))
        time.sleep(600)


def finish(then: str) -> None:
    if then == "hang":
        time.sleep(600)
    elif then != "ok":
        sys.exit(int(then))


if __name__ == "__main__":
    main(sys.argv[1:])
