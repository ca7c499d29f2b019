"""External agents: a catalogue entry whose handler is a program, not a Python function.

An agent spec's ``handler`` is ``"module:function"`` (a Python callable, run in the
worker), ``{"webhook": URL}`` (see :class:`WebhookAgent`: the same payload POSTed, a
decision back, transient failures retried under the protocols' policy) or
``{"command": [...]}``: a program run once per claimed bet (or once per heartbeat for
an agent that polls nothing). The program gets

- on stdin, one JSON object: the agent, its role and instructions, the protocols
  (version, hash, text), the bet and the moves it may make (``payload``);
- in its environment, ``FLEET_MCP_URL``, ``FLEET_MCP_TOKEN`` (a token naming the agent,
  scoped to the bet, expiring with the time limit), ``FLEET_MCP_CONFIG`` (an MCP client
  config file, the ``mcpServers`` shape agent CLIs read) and ``FLEET_AGENT``; every other
  ``FLEET_*`` variable of the worker (the signing secret, store URLs) is removed.

It either moves the bet itself through the MCP tools (and prints nothing), or prints
exactly one JSON decision on stdout, ``{"to_stage": "...", "verdict": "...",
"evidence": {...}}`` (``to_stage`` null: leave the bet), which fleet commits through the
enforcer. A non-zero exit, output that is not one JSON object, or running past the time
limit (the whole process group is killed) is a failure: nothing is moved and the bounded
stdout/stderr tails go into the heartbeat record. Before running anything the heartbeat
checks that the MCP server answers and accepts the agent's token; if not it fails loudly
and files a board task, and the program is not run blind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from fleet import usage
from fleet.context import BetContext, Decision, HeartbeatContext
from fleet.errors import (
    AgentToolsUnavailable,
    ExternalAgentFailed,
    ExternalCallFailed,
    FleetError,
    HandlerImportError,
)
from fleet.settings import Settings, get_settings

if TYPE_CHECKING:
    from fleet.agents import AgentSpec

#: Bytes of stdout and of stderr kept in the heartbeat record (the tail: where errors are).
TAIL_BYTES = 2000
#: Share of the agent's time limit one program run may take when its spec sets no timeout.
DEFAULT_TIMEOUT_SHARE = 0.5
#: A token outlives its program's time limit by this much (the program's last call in flight).
TOKEN_MARGIN_S = 30
#: Largest decision a program may print (a decision is a few hundred bytes).
MAX_DECISION_BYTES = 1024 * 1024


class CommandHandler(BaseModel):
    """``{"command": [...]}``: run a program per claimed bet (or per heartbeat)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[str, ...] = Field(min_length=1)
    timeout_s: float | None = Field(default=None, gt=0, le=3600, description="default: half the time limit")
    cwd: str | None = None


class WebhookHandler(BaseModel):
    """``{"webhook": URL}``: POST the payload per claimed bet, get a JSON decision back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="per attempt")


@dataclass(frozen=True)
class ExternalDecision(Decision):
    """A program's decision, with what the heartbeat record keeps of its run."""

    report: dict[str, Any] = field(default_factory=dict)
    #: Set when the program moved the bet itself through MCP: the outcome to record.
    moved: dict[str, Any] | None = None


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


class ExternalAgent:
    """What every external agent shares: its MCP token, the check of its tools, its decisions."""

    def __init__(self, spec: AgentSpec, settings: Settings | None = None) -> None:
        self.spec = spec
        self.settings = settings or get_settings()

    @property
    def timeout_s(self) -> float:
        """How long one run may take (the token lives a little longer)."""
        return self.spec.time_limit * DEFAULT_TIMEOUT_SHARE

    def __call__(self, ctx: BetContext | HeartbeatContext) -> ExternalDecision | None:
        """Decide on one bet (a polling agent) or do the heartbeat's work (any other agent)."""
        raise NotImplementedError

    def preflight(self, ctx: HeartbeatContext) -> None:
        """Check the MCP server answers and accepts this agent's token; else file a task and fail."""
        from fleet.mcp.client import check

        try:
            check(self.settings.mcp_endpoint, self._token(ctx, None))
        except FleetError as exc:  # down, token refused, or no signing secret here
            _file_tools_task(ctx, str(exc))
            raise AgentToolsUnavailable(f"{self.spec.name} not run: {exc}") from None
        ctx.log("mcp-ok", url=self.settings.mcp_endpoint)

    def _token(self, ctx: HeartbeatContext, bet_id: str | None) -> str:
        from fleet.mcp.tokens import mint

        bets = None if bet_id is None else [bet_id]
        ttl = self.timeout_s + TOKEN_MARGIN_S
        return mint(self.settings, self.spec.name, ttl, heartbeat_id=ctx.heartbeat_id, bets=bets)

    def _token_for(self, ctx: BetContext | HeartbeatContext) -> str:
        if isinstance(ctx, BetContext):
            return self._token(ctx.heartbeat, ctx.bet.bet_id)
        return self._token(ctx, None)

    def _decision(self, ctx: BetContext, text: str, report: dict[str, Any], what: str) -> ExternalDecision:
        """The decision in ``text`` (one JSON object); empty: whatever the agent did through MCP."""
        text = text.strip()
        if not text:
            return self._after_mcp(ctx, report)
        try:
            data = json.loads(text) if len(text) <= MAX_DECISION_BYTES else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict) or not _is_decision(data):
            raise ExternalAgentFailed(f"{what} is not one JSON decision")
        usage.record_reported(ctx.heartbeat.db, ctx.agent, ctx.heartbeat.heartbeat_id, data.get("usage"))
        evidence = data.get("evidence") or {}
        return ExternalDecision(data.get("to_stage"), str(data["verdict"]), dict(evidence), report)

    def _after_mcp(self, ctx: BetContext, report: dict[str, Any]) -> ExternalDecision:
        """No decision given: see whether the agent moved the bet through MCP itself."""
        now = ctx.heartbeat.enforcer.get(ctx.bet.bet_id)
        if now.seq == ctx.bet.seq:
            return ExternalDecision(None, "no decision", {}, report)
        record = ctx.heartbeat.enforcer.ledger.record(now.bet_id, ctx.bet.seq + 1)
        by_us = record is not None and record.heartbeat_id == ctx.heartbeat.heartbeat_id
        outcome = {"outcome": "moved via mcp" if by_us else "skipped", "to_stage": now.stage}
        if record is not None:
            outcome["verdict"] = record.verdict
        return ExternalDecision(None, "moved via mcp", {}, report, moved=outcome)


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


class WebhookAgent(ExternalAgent):
    """The handler of an agent whose spec names a webhook: POST the payload, read a decision.

    Connection errors, timeouts and 5xx answers are transient: ``ctx.call`` retries them
    under the protocols' policy, and after the last attempt the bet stays where it is
    with a failure counted. Any other non-2xx answer or a body that is not a decision is
    a permanent failure of that bet (not retried).
    """

    def __init__(self, spec: AgentSpec, handler: WebhookHandler, settings: Settings | None = None) -> None:
        super().__init__(spec, settings)
        self.handler = handler

    def __call__(self, ctx: BetContext | HeartbeatContext) -> ExternalDecision | None:
        token = self._token_for(ctx)
        data = {**payload(ctx), "mcp": {"url": self.settings.mcp_endpoint, "token": token}}
        body = ctx.call(self._post, data, token)
        if not isinstance(ctx, BetContext):
            return None
        return self._decision(ctx, body, {"webhook_status": 200}, "the webhook's answer")

    def _post(self, data: dict[str, Any], token: str) -> str:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            response = httpx.post(self.handler.webhook, content=json.dumps(data, default=str),
                                  headers={**headers, "Content-Type": "application/json"},
                                  timeout=self.handler.timeout_s)  # fmt: skip
        except httpx.HTTPError as exc:  # refused, reset, timed out: worth another attempt
            raise ExternalCallFailed(f"webhook {self.handler.webhook}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 500:
            raise ExternalCallFailed(f"webhook {self.handler.webhook} answered {response.status_code}")
        if response.status_code >= 300:
            raise ExternalAgentFailed(f"webhook {self.handler.webhook} answered {response.status_code}: "
                                      f"{response.text[:300]!r}")  # fmt: skip
        return response.text


def _is_decision(data: dict[str, Any]) -> bool:
    allowed = {"to_stage", "verdict", "evidence", "usage"}
    to_stage, evidence = data.get("to_stage"), data.get("evidence")
    return (
        set(data) <= allowed
        and isinstance(data.get("verdict"), str)
        and (to_stage is None or isinstance(to_stage, str))
        and (evidence is None or isinstance(evidence, dict))
    )


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


def payload(ctx: BetContext | HeartbeatContext) -> dict[str, Any]:
    """What a program reads on stdin: who it is, the rules, and the bet to decide on."""
    heartbeat = ctx.heartbeat if isinstance(ctx, BetContext) else ctx
    loaded = heartbeat.protocols
    data: dict[str, Any] = {
        "agent": heartbeat.agent,
        "role": heartbeat.spec.role,
        "heartbeat_id": heartbeat.heartbeat_id,
        "instructions": _instructions(heartbeat),
        "protocols": {"version": loaded.version, "hash": loaded.hash, "text": loaded.text},
        "bet": None,
        "your_moves": [],
    }
    if isinstance(ctx, BetContext):
        data["bet"] = ctx.bet.model_dump(mode="json")
        data["your_moves"] = ctx.options()
    else:  # an agent that polls no stage works from its board tasks
        data["tasks"] = [task.model_dump(mode="json") for task in ctx.tasks]
    return data


def _instructions(ctx: HeartbeatContext) -> dict[str, Any] | None:
    """The agent's instructions for its payload; unusable ones are left out (the drift audit says why)."""
    from fleet import instructions

    try:
        found = instructions.load(get_settings(), ctx.spec)
    except instructions.InstructionsError:
        return None
    return None if found is None else found.payload()


def _file_tools_task(ctx: HeartbeatContext, error: str) -> None:
    with suppress(FleetError):  # best effort: the failure is on the heartbeat record
        ctx.board.file(
            assignee=ctx.agent,
            origin="escalation",
            dedupe_key=f"mcp-unavailable:{ctx.agent}",
            title=f"{ctx.agent} was not run: its MCP tools are unavailable",
            detail={"error": error},
            by=ctx.agent,
        )


def resolve(spec: AgentSpec) -> ExternalAgent:
    """The callable handler of a spec whose handler is a command or a webhook."""
    if isinstance(spec.handler, WebhookHandler):
        return WebhookAgent(spec, spec.handler)
    if isinstance(spec.handler, CommandHandler):
        program = spec.handler.command[0]
        if shutil.which(program) is None and not Path(spec.handler.cwd or ".", program).is_file():
            raise HandlerImportError(f"agent {spec.name!r}: command {program!r} is not found")
        return CommandAgent(spec, spec.handler)
    raise TypeError(f"agent {spec.name!r}: handler is not external")


def report_of(decision: Any) -> dict[str, Any]:
    """What the heartbeat record keeps of an external run (exit code, tails); ``{}`` otherwise."""
    return dict(decision.report) if isinstance(decision, ExternalDecision) else {}


def moved_outside(decision: Any) -> dict[str, Any] | None:
    """The outcome when an external agent already moved the bet through MCP, else None."""
    return decision.moved if isinstance(decision, ExternalDecision) else None


def preflight(handler: Any, ctx: HeartbeatContext) -> None:
    """Before a heartbeat runs an external agent, check its tools; a no-op for Python handlers."""
    if isinstance(handler, ExternalAgent):
        handler.preflight(ctx)
