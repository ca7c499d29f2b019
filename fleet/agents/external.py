"""External agents: a catalogue entry whose handler is a program, not a Python function.

An agent spec's ``handler`` is ``"module:function"`` (a Python callable, run in the
worker), ``{"webhook": URL}`` (:mod:`fleet.agents.webhook`: the same payload POSTed, a
decision back, transient failures retried under the protocols' policy) or
``{"command": [...]}`` (:mod:`fleet.agents.command`): a program run once per claimed bet
(or once per heartbeat for an agent that polls nothing). This module holds what both
share: the payload, the MCP token and tools check, reading a decision. The program gets

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
and files a board task for the spec's owner (closed by the next check that passes), and
the program is not run blind.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.agents import usage
from fleet.agents.context import BetContext, Decision, HeartbeatContext
from fleet.errors import AgentToolsUnavailable, ExternalAgentFailed, FleetError
from fleet.mcp.tokens import mint
from fleet.settings import Settings, get_settings

if TYPE_CHECKING:
    from fleet.definitions.catalogue import AgentSpec

#: Bytes of stdout and of stderr kept in the heartbeat record (the tail: where errors are).
TAIL_BYTES = 2000
#: Share of the agent's time limit one program run may take when its spec sets no timeout.
DEFAULT_TIMEOUT_SHARE = 0.5
#: A token outlives its program's time limit by this much (the program's last call in flight).
TOKEN_MARGIN_S = 30
#: Largest decision a program may print (a decision is a few hundred bytes).
MAX_DECISION_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ExternalDecision(Decision):
    """A program's decision, with what the heartbeat record keeps of its run."""

    report: dict[str, Any] = field(default_factory=dict)
    #: Set when the program moved the bet itself through MCP: the outcome to record.
    moved: dict[str, Any] | None = None


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
        from fleet.mcp.client import check  # lazy: the MCP SDK's import is slow, only external agents need it

        try:
            check(self.settings.mcp_endpoint, self._token(ctx, None))
        except FleetError as exc:  # down, token refused, or no signing secret here
            _file_tools_task(ctx, str(exc))
            raise AgentToolsUnavailable(f"{self.spec.name} not run: {exc}") from None
        ctx.log("mcp-ok", url=self.settings.mcp_endpoint)
        _close_tools_task(ctx)

    def _token(self, ctx: HeartbeatContext, bet_id: str | None) -> str:
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
        heartbeat = ctx.heartbeat
        usage.record_reported(
            heartbeat.db, ctx.agent, heartbeat.heartbeat_id, data.get("usage"), ctx.bet.bet_id
        )
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


def _is_decision(data: dict[str, Any]) -> bool:
    allowed = {"to_stage", "verdict", "evidence", "usage"}
    to_stage, evidence = data.get("to_stage"), data.get("evidence")
    return (
        set(data) <= allowed
        and isinstance(data.get("verdict"), str)
        and (to_stage is None or isinstance(to_stage, str))
        and (evidence is None or isinstance(evidence, dict))
    )


def payload(ctx: BetContext | HeartbeatContext) -> dict[str, Any]:
    """What a program reads on stdin: who it is, the rules, and the bet to decide on."""
    heartbeat = ctx.heartbeat if isinstance(ctx, BetContext) else ctx
    loaded = heartbeat.protocols
    data: dict[str, Any] = {
        "agent": heartbeat.agent,
        "role": heartbeat.spec.role,
        "heartbeat_id": heartbeat.heartbeat_id,
        "instructions": None if heartbeat.instructions is None else heartbeat.instructions.payload(),
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


def _tools_task_key(agent: str) -> str:
    return f"mcp-unavailable:{agent}"


def _file_tools_task(ctx: HeartbeatContext, error: str) -> None:
    """For the spec's owner: the agent cannot fix its own tools, it is not even run."""
    with suppress(FleetError):  # best effort: the failure is on the heartbeat record
        ctx.board.file(
            assignee=ctx.spec.owner,
            origin="escalation",
            dedupe_key=_tools_task_key(ctx.agent),
            title=f"{ctx.agent} was not run: its MCP tools are unavailable",
            detail={"error": error},
            by=ctx.agent,
        )


def _close_tools_task(ctx: HeartbeatContext) -> None:
    """The tools answer again: close the task a failed check filed (one read when there is none)."""
    with suppress(FleetError):  # best effort: the next passing check tries again
        task = ctx.board.open_with_key(_tools_task_key(ctx.agent))
        if task is not None:
            ctx.board.close(task.task_id, by=ctx.agent, reason="the agent's MCP tools answer again")


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
