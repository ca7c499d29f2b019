"""A small MCP client (the official SDK over streamable HTTP), for heartbeats, tests and the bench.

One call opens a session, calls one tool and closes it; :func:`session` keeps one open
for several calls. A tool error comes back as :class:`ToolCallError` carrying the
server's message; a server that does not answer as :class:`AgentToolsUnavailable`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import anyio
import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from fleet.errors import AgentToolsUnavailable, FleetError, first_line

#: Seconds a check of the server may take before the server counts as down.
CHECK_TIMEOUT_S = 10.0


class ToolCallError(FleetError):
    """The MCP server answered a tool call with an error (a refusal, a bad argument)."""


def result_data(result: CallToolResult) -> Any:
    """A tool result as data: its structured content, else its text parsed as JSON."""
    text = "".join(c.text for c in result.content if isinstance(c, TextContent))
    if result.isError:
        raise ToolCallError(text)
    if result.structuredContent is not None:
        return result.structuredContent
    return json.loads(text) if text else None


async def _refused(response: httpx.Response) -> None:
    """Turn the server's ``401`` (a missing or rejected token) into one :class:`ToolCallError`."""
    if response.status_code != HTTPStatus.UNAUTHORIZED:
        return
    await response.aread()
    try:
        why = str(response.json().get("error_description") or "")
    except ValueError:
        why = ""
    raise ToolCallError(why or "token rejected (HTTP 401)")


@asynccontextmanager
async def session(url: str, token: str, timeout: float = 30.0) -> AsyncIterator[ClientSession]:
    """An initialized SDK session to ``url`` acting as the token's agent."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    hooks = {"response": [_refused]}
    async with (
        httpx.AsyncClient(headers=headers, timeout=timeout, event_hooks=hooks) as http,
        streamable_http_client(url, http_client=http) as (read, write, _),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


def call(url: str, token: str, tool: str, **args: Any) -> Any:
    """Blocking :func:`call_async`, for synchronous code (a heartbeat, the CLI)."""
    return anyio.run(lambda: call_async(url, token, tool, **args))


async def call_async(url: str, token: str, tool: str, **args: Any) -> Any:
    """Call one tool in a fresh session; its data, or :class:`ToolCallError`."""
    try:
        async with session(url, token) as client:
            return result_data(await client.call_tool(tool, args))
    except BaseExceptionGroup as group:  # the SDK's task groups wrap what the body raised
        raise _leaf(group) from None


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def check(url: str, token: str) -> dict[str, Any]:
    """``whoami`` through the server; :class:`AgentToolsUnavailable` if it is down or refuses the token."""
    try:
        answer: dict[str, Any] = anyio.run(_check, url, token)
    except ToolCallError as exc:
        raise AgentToolsUnavailable(f"MCP server at {url} refused the agent's token: {exc}") from None
    except TimeoutError:
        raise AgentToolsUnavailable(f"MCP server at {url} did not answer in {CHECK_TIMEOUT_S:.0f}s") from None
    except Exception as exc:  # connection refused, HTTP errors, wrapped in an ExceptionGroup by anyio
        raise AgentToolsUnavailable(f"MCP server at {url} does not answer: {_root(exc)}") from None
    return answer


async def _check(url: str, token: str) -> dict[str, Any]:
    with anyio.fail_after(CHECK_TIMEOUT_S):
        data: dict[str, Any] = await call_async(url, token, "whoami")
        return data


def _root(exc: BaseException) -> str:
    """The first leaf of an exception group, as one line (anyio wraps transport errors)."""
    exc = _leaf(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"
