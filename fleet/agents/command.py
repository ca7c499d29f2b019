"""Command agents: a program run once per claimed bet (or once per heartbeat of an agent that polls nothing).

The program gets the payload (:func:`fleet.agents.external.payload`) on stdin and, in its
environment, ``FLEET_MCP_URL``, ``FLEET_MCP_TOKEN``, ``FLEET_MCP_CONFIG`` and ``FLEET_AGENT``;
every other ``FLEET_*`` variable of the worker is removed. It runs in its own process
group, killed as a whole past its timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleet.agents.context import BetContext, HeartbeatContext
from fleet.agents.external import TAIL_BYTES, ExternalAgent, ExternalDecision, payload
from fleet.errors import ExternalAgentFailed
from fleet.settings import Settings

if TYPE_CHECKING:
    from fleet.definitions.catalogue import AgentSpec, CommandHandler


@dataclass(frozen=True)
class Run:
    """One finished program run."""

    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    def report(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code, "seconds": round(self.seconds, 3),
            "stdout_tail": _tail(self.stdout), "stderr_tail": _tail(self.stderr),
        }  # fmt: skip


def _tail(text: str) -> str:
    return text[-TAIL_BYTES:]


class CommandAgent(ExternalAgent):
    """The handler of an agent whose spec names a command; called like a Python handler."""

    def __init__(self, spec: AgentSpec, handler: CommandHandler, settings: Settings | None = None) -> None:
        super().__init__(spec, settings)
        self.handler = handler

    @property
    def timeout_s(self) -> float:
        return self.handler.timeout_s or super().timeout_s

    def __call__(self, ctx: BetContext | HeartbeatContext) -> ExternalDecision | None:
        heartbeat = ctx.heartbeat if isinstance(ctx, BetContext) else ctx
        run = self._run(heartbeat, payload(ctx), self._token_for(ctx))
        if run.exit_code != 0:
            raise ExternalAgentFailed(_failure(f"exited with code {run.exit_code}", run))
        if not isinstance(ctx, BetContext):
            return None
        try:
            return self._decision(ctx, run.stdout, run.report(), "its output")
        except ExternalAgentFailed as exc:
            raise ExternalAgentFailed(_failure(f"failed: {exc}", run)) from None

    def _run(self, ctx: HeartbeatContext, data: dict[str, Any], token: str) -> Run:
        with tempfile.TemporaryDirectory(prefix="fleet-agent-") as tmp:
            env = self._environment(token, Path(tmp))
            return run_program(list(self.handler.command), json.dumps(data, default=str), env,
                               self.timeout_s, self.handler.cwd)  # fmt: skip

    def _environment(self, token: str, tmp: Path) -> dict[str, str]:
        url = self.settings.mcp_endpoint
        config = tmp / "mcp.json"
        server = {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}
        config.write_text(json.dumps({"mcpServers": {"fleet": server}}))
        config.chmod(0o600)  # it holds the token
        # No FLEET_* of the worker reaches the program: it must not see the signing secret.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
        agent = {"FLEET_AGENT": self.spec.name, "FLEET_MCP_TOKEN": token, "FLEET_MCP_CONFIG": str(config)}
        return {**env, **agent, "FLEET_MCP_URL": url}


def _failure(what: str, run: Run) -> str:
    err, out = run.stderr[-300:], run.stdout[-300:]  # the record's bet entry stays short
    return f"agent program {what}; stderr tail: {err!r}; stdout tail: {out!r}"


def run_program(
    command: list[str], stdin: str, env: dict[str, str], timeout_s: float, cwd: str | None
) -> Run:
    """Run ``command`` in its own process group; past ``timeout_s`` kill the whole group."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd, start_new_session=True, text=True, errors="replace",
        )  # fmt: skip
    except OSError as exc:
        raise ExternalAgentFailed(f"agent program {command[0]!r} cannot start: {exc}") from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        run = Run(proc.returncode, out, err, time.monotonic() - start)
        raise ExternalAgentFailed(
            _failure(f"ran past its {timeout_s:g}s limit: process group killed", run)
        ) from None
    finally:
        if proc.poll() is None:  # an infrastructure error interrupted us: leave nothing behind
            _kill_group(proc.pid)
    return Run(proc.returncode, out, err, time.monotonic() - start)


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, signal.SIGKILL)
