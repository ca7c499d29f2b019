"""One move through the MCP tool against the same move through the in-process enforcer.

Metrics: ``inprocess_move_ms`` (median of ``Enforcer.advance`` in this process) and
``mcp_move_ms`` (median of a ``move_bet`` call to a real ``fleet mcp`` process over
streamable HTTP, from one open SDK session, as an agent session would hold it), both on
the same store in the same run, and ``mcp_added_ms``, their difference: what the tool
adds per call (HTTP, JSON-RPC, token check, protocols read). Neither passes a view of
the bet, so both read the record they move from. Loop counts are bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from bench.metrics import Metric, publish, say
from bench.stack import ROOT, bench_stack

BETS = 20
#: The signing secret of the bench's server (bench only).
SECRET = "bench-secret-for-the-fleet-mcp-server-0123456789"

METRICS = {"inprocess_move_ms": "<= 50", "mcp_move_ms": "<= 60", "mcp_added_ms": "<= 5"}


def _settings(port: int) -> Any:
    from pydantic import SecretStr

    from fleet.settings import load_settings

    return load_settings().model_copy(update={"mcp_secret": SecretStr(SECRET), "mcp_port": port})


@contextmanager
def mcp_process(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """A real ``fleet mcp`` on ``port``; yields its URL once it listens."""
    cmd = [sys.executable, "-c", "from fleet.cli import main; main()", "mcp"]
    full = {**os.environ, **env, "FLEET_MCP_SECRET": SECRET, "FLEET_MCP_PORT": str(port)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while not _listens(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"fleet mcp did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)  # poll: wait for the server with a deadline
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _listens(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _steps(enforcer: Any, owners: list[tuple[str, str]], bets: list[Any]) -> list[tuple[str, str, str, int]]:
    """(bet, to_stage, owner, expected seq) of every move walking ``bets`` along the path."""
    return [(bet.bet_id, to, owner, seq) for bet in bets for seq, (to, owner) in enumerate(owners)]


def inprocess_moves(enforcer: Any, steps: list[tuple[str, str, str, int]]) -> list[float]:
    times = []
    for bet_id, to_stage, owner, seq in steps:
        start = time.perf_counter()
        enforcer.advance(bet_id, to_stage, owner, seq, verdict="bench")
        times.append(time.perf_counter() - start)
    return times


async def mcp_moves(url: str, tokens: dict[str, str], steps: list[tuple[str, str, str, int]]) -> list[float]:
    """Each move from an open session per owner (an agent keeps its session for its run)."""
    from contextlib import AsyncExitStack

    from fleet.mcp.client import result_data, session

    times = []
    async with AsyncExitStack() as stack:
        sessions = {
            owner: await stack.enter_async_context(session(url, tok)) for owner, tok in tokens.items()
        }
        for bet_id, to_stage, owner, seq in steps:
            args = {"bet_id": bet_id, "to_stage": to_stage, "expected_seq": seq, "verdict": "bench"}
            start = time.perf_counter()
            result_data(await sessions[owner].call_tool("move_bet", args))
            times.append(time.perf_counter() - start)
    return times


def measure(names: set[str], env: dict[str, str]) -> None:
    from bench.bench_enforcer import advance_path, create_bets
    from fleet.definitions.pipeline import load_pipeline
    from fleet.ledger import Enforcer
    from fleet.mcp.tokens import mint
    from fleet.ops import services as svc
    from fleet.settings import load_settings
    from fleet.store import database, ensure_indexes

    db = database(load_settings())
    ensure_indexes(db)
    pipeline = load_pipeline(None)
    enforcer, path = Enforcer(db, pipeline), advance_path(pipeline)
    port = svc.free_port()
    settings = _settings(port)
    tokens = {owner: mint(settings, owner, 3600) for _, owner in path}
    with tempfile.TemporaryDirectory() as tmp, mcp_process(env, port, Path(tmp) / "mcp.log") as url:
        inprocess_moves(enforcer, _steps(enforcer, path, create_bets(2)))  # warm both paths up
        anyio.run(mcp_moves, url, tokens, _steps(enforcer, path, create_bets(2)))
        local = statistics.median(inprocess_moves(enforcer, _steps(enforcer, path, create_bets(BETS)))) * 1000
        remote = (
            statistics.median(anyio.run(mcp_moves, url, tokens, _steps(enforcer, path, create_bets(BETS))))
            * 1000
        )
    detail = f"median of {BETS * len(path)} moves each, same store"
    figures = {"inprocess_move_ms": local, "mcp_move_ms": remote, "mcp_added_ms": remote - local}
    for name, value in figures.items():
        if name in names:
            publish(Metric(name, value, METRICS[name], detail))
    say(f"  ledger verify after the run: {len(enforcer.verify())} violation(s)")


def run(names: set[str]) -> None:
    with bench_stack("fleet_bench_mcp") as env:
        measure(names, env)


if __name__ == "__main__":
    run(set(METRICS))
