"""What each MCP tool does, as plain synchronous methods over the shared state.

Every method takes the caller's verified :class:`~fleet.mcp.tokens.Identity` first: the
agent acting is always the token's, never an argument. Stage changes go through the
same :class:`~fleet.ledger.Enforcer` as in-process heartbeats, so the handoff map, the
ownership rule and the sequence check are enforced (and refusals recorded) in one place.
Errors are :class:`~fleet.errors.FleetError`; the server turns them into tool errors.
"""

from __future__ import annotations

from typing import Any

from pymongo.database import Database

from fleet.agents import usage
from fleet.board import Board, Origin, Task
from fleet.definitions.catalogue import Registry
from fleet.definitions.protocols import LoadedProtocols, load_protocols
from fleet.errors import BoardError, FleetError, TokenRejected, TransitionRefused
from fleet.ledger import Bet, Enforcer, ProtocolStamp
from fleet.ledger.records import Refusal
from fleet.mcp.tokens import Identity
from fleet.runtime import wake
from fleet.settings import Settings
from fleet.store import Document

#: Most bets ``list_waiting`` returns in one call.
MAX_WAITING = 200


class MoveRefused(FleetError):
    """The enforcer refused a move; the message adds the moves allowed from the bet's stage."""


class FleetTools:
    """The shared state the MCP tools act on, one method per tool."""

    def __init__(self, settings: Settings, registry: Registry, db: Database[Document]) -> None:
        self.settings = settings
        self.registry = registry
        self.db = db
        self.enforcer = Enforcer(db, registry.pipeline)
        self.board = Board(db)
        self.wakeup = wake.Wakeup.of(registry, settings)

    # --- identity -----------------------------------------------------------------

    def admit(self, identity: Identity) -> None:
        """Refuse a validly signed token naming an agent this fleet does not have."""
        if self.registry.get(identity.agent) is None:
            raise TokenRejected(f"unknown agent {identity.agent!r}", identity.agent)

    def record_refusal(self, tool: str, exc: TokenRejected, args: dict[str, Any], hb: str | None) -> None:
        """Store a refused call of a verified agent (a bad token is not one: fleet.mcp.rejections)."""
        seq = args.get("expected_seq")
        self.enforcer.ledger.refuse(
            Refusal(
                bet_id=args.get("bet_id") if isinstance(args.get("bet_id"), str) else None,
                agent=exc.agent or "(anonymous)",
                from_stage=None,
                to_stage=str(args.get("to_stage") or f"(tool {tool})"),
                expected_seq=seq if isinstance(seq, int) else None,
                reason=f"token rejected: {exc.reason}",
                error=type(exc).__name__,
                detail=f"tool {tool}: {exc.reason}",
                heartbeat_id=hb,
                protocol_version=None,
                protocol_hash=None,
                at=self.enforcer.ledger.now(),
            )
        )

    def _in_scope(self, identity: Identity, tool: str, bet_id: str, args: dict[str, Any]) -> None:
        if not identity.allows(bet_id):
            exc = TokenRejected(f"bet {bet_id!r} is outside the token's scope", identity.agent)
            self.record_refusal(tool, exc, args, identity.heartbeat_id)
            raise exc

    # --- tools --------------------------------------------------------------------

    def whoami(self, identity: Identity) -> dict[str, Any]:
        spec = self.registry.require(identity.agent)
        return {
            "agent": identity.agent,
            "heartbeat_id": identity.heartbeat_id,
            "expires_at": identity.expires_at,
            "bet_scope": None if identity.bets is None else sorted(identity.bets),
            "polls": list(spec.polls),
            "owns": [list(edge) for edge in spec.owns],
            "creates": spec.creates,
        }

    def get_bet(self, identity: Identity, bet_id: str) -> dict[str, Any]:
        self._in_scope(identity, "get_bet", bet_id, {"bet_id": bet_id})
        bet = self.enforcer.get(bet_id)
        timeline = [r.model_dump(mode="json") for r in self.enforcer.history(bet_id)]
        return {**self._bet_view(identity, bet), "timeline": timeline}

    def list_waiting(self, identity: Identity, limit: int) -> dict[str, Any]:
        spec = self.registry.require(identity.agent)
        found = self.enforcer.bets_at(list(spec.polls), min(limit, MAX_WAITING)) if spec.polls else []
        bets = [b for b in found if isinstance(b, Bet) and identity.allows(b.bet_id)]
        return {"stages": list(spec.polls), "bets": [self._bet_view(identity, b) for b in bets]}

    def move_bet(
        self,
        identity: Identity,
        bet_id: str,
        to_stage: str,
        expected_seq: int,
        verdict: str,
        evidence: dict[str, Any] | None,
    ) -> dict[str, Any]:
        args = {"bet_id": bet_id, "to_stage": to_stage, "expected_seq": expected_seq}
        self._in_scope(identity, "move_bet", bet_id, args)
        stamp = self._protocols().stamp
        try:
            moved = self.enforcer.advance(
                bet_id,
                to_stage,
                identity.agent,
                expected_seq,
                verdict=verdict,
                evidence=evidence,
                heartbeat_id=identity.heartbeat_id,
                stamp=stamp,
            )
        except TransitionRefused as exc:
            raise MoveRefused(f"{exc}. {self._allowed_moves(identity, bet_id)}") from None
        wake.on_arrival(self.wakeup, moved.stage)  # the next owner runs now, as after any commit
        return self._bet_view(identity, moved)

    def create_bet(self, identity: Identity, fields: dict[str, Any], bet_id: str | None) -> dict[str, Any]:
        if identity.bets is not None:
            exc = TokenRejected("a token scoped to bets may not create bets", identity.agent)
            self.record_refusal("create_bet", exc, {"bet_id": bet_id}, identity.heartbeat_id)
            raise exc
        stamp: ProtocolStamp = self._protocols().stamp
        bet = self.enforcer.create_bet(
            identity.agent, fields, bet_id=bet_id, heartbeat_id=identity.heartbeat_id, stamp=stamp
        )
        wake.on_arrival(self.wakeup, bet.stage)  # its first owner runs now, not at its next slot
        return self._bet_view(identity, bet)

    def read_protocols(self, identity: Identity) -> dict[str, Any]:
        loaded = self._protocols()
        return {"version": loaded.version, "hash": loaded.hash, "text": loaded.text}

    def list_tasks(self, identity: Identity, everyone: bool) -> dict[str, Any]:
        tasks = self.board.open_tasks() if everyone else self.board.open_for(identity.agent)
        return {"tasks": [_task_view(t) for t in tasks]}

    def file_task(
        self, identity: Identity, assignee: str, title: str, detail: dict[str, Any], dedupe_key: str
    ) -> dict[str, Any]:
        self.registry.require(assignee)
        # Namespaced by the caller: an agent cannot squat a key the CEO's audits file under.
        key = f"agent:{identity.agent}:{dedupe_key}"
        task, new = self.board.file(
            assignee=assignee, origin=Origin.ESCALATION, dedupe_key=key, title=title,
            detail=detail, by=identity.agent,
        )  # fmt: skip
        return {"task": _task_view(task), "new": new}

    def close_task(self, identity: Identity, task_id: str, reason: str) -> dict[str, Any]:
        task = self.board.get(task_id)
        if identity.agent not in (task.assignee, task.filed_by):
            raise BoardError(f"{identity.agent!r} may close only tasks assigned to it or filed by it")
        return {"task": _task_view(self.board.close(task_id, by=identity.agent, reason=reason))}

    def report_usage(
        self, identity: Identity, tokens_in: int, tokens_out: int, cost_usd: float, model: str
    ) -> dict[str, Any]:
        one_bet = next(iter(identity.bets)) if identity.bets is not None and len(identity.bets) == 1 else None
        usage.record(self.db, identity.agent, identity.heartbeat_id, tokens_in=tokens_in,
                     tokens_out=tokens_out, cost_usd=cost_usd, model=model, bet_id=one_bet)  # fmt: skip
        return {"recorded": True}

    # --- helpers ------------------------------------------------------------------

    def _protocols(self) -> LoadedProtocols:
        return load_protocols(self.settings.protocols_dir)

    def _bet_view(self, identity: Identity, bet: Bet) -> dict[str, Any]:
        return {**bet.model_dump(mode="json"), "your_moves": self._yours(identity, bet.stage)}

    def _yours(self, identity: Identity, stage: str) -> list[dict[str, str]]:
        edges = self.registry.pipeline.edges_from(stage)
        return [{"to_stage": t.dest, "kind": t.kind.value} for t in edges if t.owner == identity.agent]

    def _allowed_moves(self, identity: Identity, bet_id: str) -> str:
        """Where the bet is now and which moves exist from there, for a refused caller."""
        try:
            bet = self.enforcer.get(bet_id)
        except FleetError:
            return "The bet cannot be read."
        edges = self.registry.pipeline.edges_from(bet.stage)
        listed = ", ".join(f"{t.dest} (owner {t.owner})" for t in edges) or "none"
        yours = ", ".join(m["to_stage"] for m in self._yours(identity, bet.stage)) or "none"
        return f"The bet is at {bet.stage!r} seq {bet.seq}; moves from there: {listed}; yours: {yours}."


def _task_view(task: Task) -> dict[str, Any]:
    return task.model_dump(mode="json")
