"""Command agents: a program run once per claimed bet (or once per heartbeat of an agent that polls nothing).

The program gets the payload (:func:`fleet.agents.external.payload`) on stdin and, in its
environment, ``FLEET_MCP_URL``, ``FLEET_MCP_TOKEN``, ``FLEET_MCP_CONFIG`` and ``FLEET_AGENT``;
every other ``FLEET_*`` variable of the worker is removed. It runs under a small launcher
(:mod:`fleet.agents.launcher`) in its own session; past its timeout the launcher kills it
and every process it started, those that left its group included, and reading its output
is bounded. Usage it printed counts whatever its exit (a timeout's partial output too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fleet.agents import usage
from fleet.agents.context import BetContext, HeartbeatContext
from fleet.agents.external import MAX_DECISION_BYTES, TAIL_BYTES, ExternalAgent, ExternalDecision, payload
from fleet.errors import ExternalAgentFailed, FleetError
from fleet.settings import Settings

if TYPE_CHECKING:
    from fleet.definitions.catalogue import AgentSpec, CommandHandler


#: The launcher every program runs under (a script: it imports nothing of fleet).
LAUNCHER = Path(__file__).with_name("launcher.py")
#: Once the program is gone, its output is read for at most this long more.
DRAIN_S = 1.0
#: After SIGTERM the launcher has this long to kill what the program started (then SIGKILL).
KILL_GRACE_S = 0.5


@dataclass(frozen=True)
class Run:
    """One finished program run."""

    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    def report(self) -> dict[str, Any]:
        """What a bet's record entry keeps of the run, a success's or a failure's alike."""
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
        if run.timed_out or run.exit_code != 0:
            _salvage_usage(ctx, run.stdout)  # every report counts, whatever the exit
            what = (
                f"ran past its {self.timeout_s:g}s limit: process group killed"
                if run.timed_out
                else f"exited with code {run.exit_code}"
            )
            raise ExternalAgentFailed(_failure(what, run), run.report())
        if not isinstance(ctx, BetContext):
            return None
        try:
            return self._decision(ctx, run.stdout, run.report(), "its output")
        except ExternalAgentFailed as exc:
            _salvage_usage(ctx, run.stdout)
            raise ExternalAgentFailed(_failure(f"failed: {exc}", run), run.report()) from None

    def _run(self, ctx: HeartbeatContext, data: dict[str, Any], token: str) -> Run:
        # Removed in every outcome: run_program returns (or raises) only once the program is gone.
        with tempfile.TemporaryDirectory(prefix="fleet-agent-", ignore_cleanup_errors=True) as tmp:
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
    lines = run.stderr.strip().splitlines() or [""]
    return f"agent program {what}; last stderr line: {lines[-1][-TAIL_BYTES:]!r}"


def _salvage_usage(ctx: BetContext | HeartbeatContext, stdout: str) -> None:
    """Count the usage a failed program printed (its last JSON object with a ``usage`` field)."""
    heartbeat = ctx.heartbeat if isinstance(ctx, BetContext) else ctx
    bet_id = ctx.bet.bet_id if isinstance(ctx, BetContext) else None
    for chunk in [stdout.strip(), *reversed(stdout.strip().splitlines())]:
        try:
            data = json.loads(chunk) if 0 < len(chunk) <= MAX_DECISION_BYTES else None
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "usage" in data:
            with suppress(FleetError):  # a malformed report is refused; the failure is still recorded
                usage.record_reported(
                    heartbeat.db, heartbeat.agent, heartbeat.heartbeat_id, data["usage"], bet_id
                )
            return


def run_program(
    command: list[str], stdin: str, env: dict[str, str], timeout_s: float, cwd: str | None
) -> Run:
    """Run ``command`` under the launcher in its own session; past ``timeout_s`` end it and all it started.

    The launcher (:mod:`fleet.agents.launcher`) kills every descendant, those that left the
    process group included, when the program exits or is stopped. Reading the output after
    that is bounded too (:data:`DRAIN_S`): a process that escaped anyway cannot hold us.
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), *command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=cwd, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        raise ExternalAgentFailed(f"agent program {command[0]!r} cannot start: {exc}") from None
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out, err = _Drain(proc.stdout), _Drain(proc.stderr)
    threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True).start()
    timed_out = False
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        if proc.poll() is None:  # past its time, or an infrastructure error interrupted us
            _stop(proc)
        deadline = time.monotonic() + DRAIN_S
        out.join(deadline)
        err.join(deadline)
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return Run(code, out.text(), err.text(), time.monotonic() - start, timed_out)


class _Drain:
    """One output pipe read to its end on a daemon thread, joined within a deadline."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        with suppress(OSError, ValueError):
            while chunk := os.read(pipe.fileno(), 65536):
                self.chunks.append(chunk)

    def join(self, deadline: float) -> None:
        self.thread.join(max(deadline - time.monotonic(), 0.0))

    def text(self) -> str:
        return b"".join(list(self.chunks)).decode(errors="replace")


def _feed(pipe: IO[bytes], data: bytes) -> None:
    with suppress(OSError):  # the program may exit (or be killed) without reading it all
        pipe.write(data)
        pipe.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the launcher (it kills what the program started), then SIGKILL the whole group."""
    with suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE_S)
    _kill_group(proc.pid)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE_S)


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, signal.SIGKILL)
