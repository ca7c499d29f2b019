"""A real ``fleet mcp`` subprocess (streamable HTTP) over the session's store, and token helpers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr
from pymongo.database import Database

from fleet.definitions.pipeline import load_pipeline
from fleet.ledger import Bet, Enforcer
from fleet.ops import services as svc
from fleet.settings import Settings, get_settings, load_settings
from fleet.store import Document
from tests.conftest import ROOT, Stack, wait_for

#: The signing secret of the test server (tests only; at least 32 bytes).
SECRET = "test-secret-for-the-fleet-mcp-server-0123456789"


@dataclass
class McpServer:
    """A running ``fleet mcp`` process and the settings to mint tokens it accepts."""

    url: str
    settings: Settings
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def mcp_server(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpServer]:
    """``fleet mcp`` on a free port, with the default pipeline and catalogue."""
    port = svc.free_port()
    # Every test's bad calls come from 127.0.0.1 within a minute or so: the per-source limit
    # (a count in the server process) is set high here and tested on its own.
    env = {**os.environ, **stack.env, "FLEET_MCP_SECRET": SECRET, "FLEET_MCP_PORT": str(port),
           "FLEET_MCP_REJECTIONS_PER_MIN": "10000"}  # fmt: skip
    log = tmp_path_factory.mktemp("mcp") / "mcp.log"
    with log.open("wb") as out:
        cmd = [sys.executable, "-c", "from fleet.cli import main; main()", "mcp"]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = McpServer(f"http://127.0.0.1:{port}/mcp", _settings(port), proc, log)
    wait_for(lambda: _answers(port) or proc.poll() is not None, 60, "fleet mcp to listen")
    if proc.poll() is not None:
        raise AssertionError(f"fleet mcp exited:\n{server.output()[-3000:]}")
    yield server
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)


def _settings(port: int) -> Settings:
    return load_settings().model_copy(update={"mcp_secret": SecretStr(SECRET), "mcp_port": port})


def raw_token(claims: dict[str, Any], secret: str = SECRET, kid: str = "k1") -> str:
    """A token built by hand (expired, forged, old key id) to see the server refuse it."""
    now = int(time.time())
    return jwt.encode(
        {"iat": now, "exp": now + 60, "aud": "fleet-mcp", "iss": "fleet", **claims},
        secret,
        algorithm="HS256",
        headers={"kid": kid},
    )


def post(
    server: McpServer, token: str | None, method: str, params: dict[str, Any] | None = None
) -> httpx.Response:
    """One JSON-RPC request to the server as raw HTTP (stateless: no session needed)."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    return httpx.post(server.url, json=message, headers=headers, timeout=30)


@pytest.fixture
def agent_env(mcp_server: McpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's settings point at the test MCP server and share its secret (as a worker's)."""
    monkeypatch.setenv("FLEET_MCP_SECRET", SECRET)
    monkeypatch.setenv("FLEET_MCP_URL", mcp_server.url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def bet(db: Database[Document]) -> Bet:
    """A fresh bet at the default pipeline's first stage."""
    pipeline = load_pipeline(None)
    return Enforcer(db, pipeline).create_bet(pipeline.creators[0], {"idea": "x"})
