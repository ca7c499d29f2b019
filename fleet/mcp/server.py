"""``fleet mcp``: the shared state served as MCP tools (official SDK, FastMCP).

Transports: streamable HTTP (stateless, JSON responses: any number of agents, each request
carrying ``Authorization: Bearer <token>``), or stdio for one local agent, whose token
is given once at start (``FLEET_MCP_TOKEN``). Every HTTP request, whatever its MCP method,
is authenticated before it reaches the SDK (:mod:`fleet.mcp.auth`): a missing or invalid
token gets ``401`` and is recorded apart from the agents' refusals, with the identity it
claimed (:mod:`fleet.mcp.rejections`). Tools run in worker threads so one slow store call
does not stall the others. The tool bodies live in :mod:`fleet.mcp.tools`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio
import uvicorn
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import Field

from fleet.definitions.catalogue import Registry, get_registry
from fleet.errors import FleetError, TokenRejected
from fleet.mcp import tokens
from fleet.mcp.auth import IDENTITY_KEY, BearerAuth
from fleet.mcp.rejections import Rejections
from fleet.mcp.tools import MAX_WAITING, FleetTools
from fleet.settings import Settings
from fleet.store import database, ensure_indexes

Transport = Literal["http", "stdio"]
#: Verified tokens remembered (each until it expires), so a session's requests verify once.
VERIFIED_CACHE = 4096
#: The source recorded for a refused call over stdio.
STDIO_SOURCE = "stdio"
log = logging.getLogger(__name__)

INSTRUCTIONS = """\
fleet's shared state: a ledger of bets moving through pipeline stages, and a task board.
You act as the one agent your bearer token names. Start with `whoami` (your stages and
edges), then `list_waiting` (bets at your stages), `get_bet` (a bet and its timeline) and
`move_bet` (advance, kill, park or revive along an edge you own, giving the bet's current
`seq` as `expected_seq`). A refused move returns an error naming the moves allowed.
Report model usage with `report_usage`."""

BetId = Annotated[str, Field(min_length=1, max_length=200, description="The bet's id, as the tools list it.")]
Stage = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="Target stage; must be an edge you own from the bet's current stage "
        "(see `your_moves` in get_bet/list_waiting).",
    ),
]
Seq = Annotated[
    int,
    Field(
        ge=0,
        strict=True,  # "0", true and 1.0 are not a seq
        description="The bet's `seq` as you last read it; the move is refused as stale "
        "if anyone moved the bet since.",
    ),
]
Verdict = Annotated[
    str, Field(min_length=1, max_length=200, description="Short verdict, e.g. 'pass' or 'fail: no demand'.")
]
Evidence = Annotated[
    dict[str, Any] | None,
    Field(description="What the verdict rests on (JSON object: scores, sources, notes); kept with the move."),
]

BetFields = Annotated[dict[str, Any], Field(description="The bet's data, e.g. {'idea': ..., 'source': ...}.")]
DedupeKey = Annotated[str, Field(min_length=1, max_length=200, description="Same problem, same key.")]
Detail = Annotated[dict[str, Any] | None, Field(description="Anything that helps (a JSON object).")]


class Server:
    """The FastMCP server and the shared state its tools act on."""

    def __init__(self, settings: Settings, registry: Registry, stdio_token: str | None = None) -> None:
        tokens.ensure_secret(settings)  # never serve unauthenticated
        db = database(settings)
        ensure_indexes(db, settings)
        self.settings = settings
        self.tools = FleetTools(settings, registry, db)
        self.rejections = Rejections(db, settings.mcp_rejections_per_min)
        self.stdio_token = stdio_token
        self._verified: dict[str, tokens.Identity] = {}
        self.mcp = FastMCP(
            "fleet",
            instructions=INSTRUCTIONS,
            host=settings.mcp_host,
            port=settings.mcp_port,
            stateless_http=True,
            json_response=True,
            log_level="WARNING",
        )
        _register(self)
        _reuse_initialization_options(self.mcp)

    def authenticate(self, token: str | None) -> tokens.Identity:
        """The identity ``token`` proves for an agent of this fleet, or :class:`TokenRejected`."""
        if token is not None and (known := self._verified.get(token)) is not None:
            if time.time() < known.expires_at + tokens.LEEWAY_S:
                return known
            del self._verified[token]
        identity = tokens.verify(self.settings, token)
        self.tools.admit(identity)
        if token is not None:
            if len(self._verified) >= VERIFIED_CACHE:
                self._verified.clear()
            self._verified[token] = identity
        return identity

    def reject(self, exc: TokenRejected, source: str, call: dict[str, Any]) -> None:
        """Record a call refused for its token (see :mod:`fleet.mcp.rejections`)."""
        try:
            self.rejections.record(exc, source, call)
        except FleetError as err:  # the store is down: the call is refused all the same
            log.warning("could not record a rejected token: %s", err)

    def _identity(self, ctx: Context[Any, Any, Any], tool: str, args: dict[str, Any]) -> tokens.Identity:
        request = ctx.request_context.request
        if request is not None:  # HTTP: BearerAuth verified it before the SDK saw the request
            identity = request.scope.get("state", {}).get(IDENTITY_KEY)
            if not isinstance(identity, tokens.Identity):
                raise ToolError("token rejected: the request was not authenticated")
            return identity
        try:  # stdio: one local agent, token given at start, checked on every call
            return self.authenticate(self.stdio_token)
        except TokenRejected as exc:
            self.reject(exc, STDIO_SOURCE, {"tool": tool, **args})
            raise ToolError(str(exc)) from None

    async def call(self, ctx: Context[Any, Any, Any], tool: str, fn: Callable[..., Any], **args: Any) -> Any:
        """Run ``fn(identity, **args)`` for the call's verified identity, in a worker thread."""
        identity = self._identity(ctx, tool, args)
        return await anyio.to_thread.run_sync(functools.partial(self._run, identity, fn, args))

    def _run(self, identity: tokens.Identity, fn: Callable[..., Any], args: dict[str, Any]) -> Any:
        try:
            return fn(identity, **args)
        except FleetError as exc:  # a refusal, an unknown bet: the agent reads why
            raise ToolError(str(exc)) from None

    def http_app(self) -> BearerAuth:
        """The streamable-HTTP ASGI app, every request behind bearer authentication."""
        return BearerAuth(self.mcp.streamable_http_app(), self.authenticate, self.reject)

    def run(self, transport: Transport) -> None:
        """Serve until interrupted."""
        if transport == "stdio":
            try:  # a bad token: recorded, and one clear error before serving anything
                self.authenticate(self.stdio_token)
            except TokenRejected as exc:
                self.reject(exc, STDIO_SOURCE, {"method": "(start)"})
                raise
            self.mcp.run("stdio")
            return
        config = uvicorn.Config(
            self.http_app(), host=self.settings.mcp_host, port=self.settings.mcp_port, log_level="warning"
        )
        uvicorn.Server(config).run()


def _register(server: Server) -> None:  # noqa: C901 - one short closure per tool, nothing else
    t = server.tools
    # Answers are JSON text only: an output schema would be a bare "object" (no help to a
    # model) that both ends validate on every call, at a measurable cost per move.
    tool = functools.partial(server.mcp.tool, structured_output=False)

    @tool(description="Who you are: your agent name, the stages you poll, the edges you own.")
    async def whoami(ctx: Context[Any, Any, Any]) -> dict[str, Any]:
        return await server.call(ctx, "whoami", t.whoami)  # type: ignore[no-any-return]

    @tool(description="One bet: stage, seq, fields, the moves you own from its stage, and its timeline.")
    async def get_bet(ctx: Context[Any, Any, Any], bet_id: BetId) -> dict[str, Any]:
        return await server.call(ctx, "get_bet", t.get_bet, bet_id=bet_id)  # type: ignore[no-any-return]

    @tool(description="Bets waiting at the stages you poll, least recently attempted first.")
    async def list_waiting(
        ctx: Context[Any, Any, Any],
        limit: Annotated[int, Field(ge=1, le=MAX_WAITING, description="Most bets to return.")] = 20,
    ) -> dict[str, Any]:
        return await server.call(ctx, "list_waiting", t.list_waiting, limit=limit)  # type: ignore[no-any-return]

    @tool(
        description="Move a bet along an edge you own (advance, kill, park or revive). The move is "
        "checked by the transition enforcer; a refusal says why and lists the moves allowed."
    )
    async def move_bet(
        ctx: Context[Any, Any, Any],
        bet_id: BetId,
        to_stage: Stage,
        expected_seq: Seq,
        verdict: Verdict,
        evidence: Evidence = None,
    ) -> dict[str, Any]:
        return await server.call(  # type: ignore[no-any-return]
            ctx, "move_bet", t.move_bet, bet_id=bet_id, to_stage=to_stage,
            expected_seq=expected_seq, verdict=verdict, evidence=evidence,
        )  # fmt: skip

    @tool(description="Create a bet in the pipeline's first stage (only creator agents may).")
    async def create_bet(
        ctx: Context[Any, Any, Any],
        fields: BetFields,
        bet_id: Annotated[
            str | None, Field(max_length=200, description="Optional id; a fresh one is made if omitted.")
        ] = None,
    ) -> dict[str, Any]:
        return await server.call(ctx, "create_bet", t.create_bet, fields=fields, bet_id=bet_id)  # type: ignore[no-any-return]

    @tool(description="The shared protocols file: version, content hash and full text (YAML).")
    async def read_protocols(ctx: Context[Any, Any, Any]) -> dict[str, Any]:
        return await server.call(ctx, "read_protocols", t.read_protocols)  # type: ignore[no-any-return]

    @tool(description="Open board tasks assigned to you (or every open task with everyone=true).")
    async def list_tasks(
        ctx: Context[Any, Any, Any],
        everyone: Annotated[bool, Field(description="List every open task, not only yours.")] = False,
    ) -> dict[str, Any]:
        return await server.call(ctx, "list_tasks", t.list_tasks, everyone=everyone)  # type: ignore[no-any-return]

    @tool(
        description="File a task on the board for an agent; while one with the same dedupe_key is "
        "open, the open one is returned instead of a duplicate."
    )
    async def file_task(
        ctx: Context[Any, Any, Any],
        assignee: Annotated[str, Field(min_length=1, description="The agent that should do it.")],
        title: Annotated[str, Field(min_length=1, max_length=300, description="One line: what to do.")],
        dedupe_key: DedupeKey,
        detail: Detail = None,
    ) -> dict[str, Any]:
        return await server.call(  # type: ignore[no-any-return]
            ctx, "file_task", t.file_task, assignee=assignee, title=title,
            detail=detail or {}, dedupe_key=dedupe_key,
        )  # fmt: skip

    @tool(description="Close a board task assigned to you or filed by you; closing is final.")
    async def close_task(
        ctx: Context[Any, Any, Any],
        task_id: Annotated[str, Field(min_length=1, description="The task's id, from list_tasks.")],
        reason: Annotated[str, Field(min_length=1, max_length=500, description="Why it is done.")],
    ) -> dict[str, Any]:
        return await server.call(ctx, "close_task", t.close_task, task_id=task_id, reason=reason)  # type: ignore[no-any-return]

    @tool(description="Report model usage of this run (tokens in/out, cost) for budgets and spend.")
    async def report_usage(
        ctx: Context[Any, Any, Any],
        tokens_in: Annotated[int, Field(ge=0, description="Prompt tokens used.")],
        tokens_out: Annotated[int, Field(ge=0, description="Completion tokens used.")],
        cost_usd: Annotated[float, Field(ge=0, description="Cost in US dollars.")] = 0.0,
        model: Annotated[str, Field(max_length=100, description="Model name.")] = "",
    ) -> dict[str, Any]:
        return await server.call(  # type: ignore[no-any-return]
            ctx, "report_usage", t.report_usage, tokens_in=tokens_in, tokens_out=tokens_out,
            cost_usd=cost_usd, model=model,
        )  # fmt: skip


def _reuse_initialization_options(mcp: FastMCP) -> None:
    """Build the server's initialization options once: the SDK rebuilds them for every
    stateless request, reading the package's metadata each time (~0.6 ms per request)."""
    low = mcp._mcp_server
    build = low.create_initialization_options
    options = build()

    def once(*args: Any, **kwargs: Any) -> Any:
        return build(*args, **kwargs) if args or kwargs else options

    low.create_initialization_options = once  # type: ignore[method-assign]


def serve(settings: Settings, transport: Transport, stdio_token: str | None = None) -> None:
    """Build the server from the settings and run it (``fleet mcp``)."""
    Server(settings, get_registry(), stdio_token).run(transport)
