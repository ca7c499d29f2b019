"""Bearer authentication in front of the MCP endpoint: no valid token, no MCP at all.

Every HTTP request (``initialize``, ``tools/list``, ``tools/call``, anything) must carry
``Authorization: Bearer <token>`` naming an agent of this fleet. Otherwise the answer is
``401`` with ``WWW-Authenticate: Bearer`` (RFC 6750; no OAuth discovery is advertised:
tokens come from ``fleet token`` or the heartbeat) and the refusal is recorded through
:class:`~fleet.mcp.rejections.Rejections`. A request that passes carries the verified
:class:`~fleet.mcp.tokens.Identity` in ``scope["state"]`` for the tools.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio

from fleet.errors import TokenRejected
from fleet.mcp.rejections import call_of
from fleet.mcp.tokens import Identity

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where the verified identity travels with the request (``request.state``).
IDENTITY_KEY = "fleet_identity"
#: Header prefix of a bearer token (RFC 6750).
BEARER = "bearer "
#: Most of a refused request's body read to record what it asked for.
MAX_BODY_READ = 64 * 1024
REALM = "fleet-mcp"
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header value, if it is one."""
    return header[len(BEARER) :].strip() or None if header.lower().startswith(BEARER) else None


class BearerAuth:
    """ASGI middleware: verify the bearer token of every HTTP request before the MCP app."""

    def __init__(
        self,
        app: AsgiApp,
        verify: Callable[[str | None], Identity],
        record: Callable[[TokenRejected, str, dict[str, Any]], object],
    ) -> None:
        self.app = app
        self.verify = verify
        self.record = record
        # Records are written one at a time (fleet.mcp.rejections): a flood of bad tokens
        # waits here, in the event loop, instead of taking the threads valid calls run in.
        self._recording: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = bearer_token(headers.get("authorization", ""))
        try:
            identity = self.verify(token)
        except TokenRejected as exc:
            client = scope.get("client")
            source = str(client[0]) if client else "(unknown)"
            call = call_of(await _body(receive))
            self._recording = self._recording or anyio.CapacityLimiter(1)
            await anyio.to_thread.run_sync(self.record, exc, source, call, limiter=self._recording)
            await _unauthorized(send, exc, token is None)
            return
        scope.setdefault("state", {})[IDENTITY_KEY] = identity
        await self.app(scope, receive, send)


async def _body(receive: Receive) -> bytes:
    """Up to :data:`MAX_BODY_READ` bytes of the request body (the rest is never read)."""
    body = b""
    while len(body) < MAX_BODY_READ:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return body[:MAX_BODY_READ]


async def _unauthorized(send: Send, exc: TokenRejected, missing: bool) -> None:
    """``401`` with a ``WWW-Authenticate: Bearer`` challenge (RFC 6750 section 3)."""
    description = _UNSAFE.sub("?", str(exc))[:300]
    challenge = f'Bearer realm="{REALM}"'
    if not missing:  # a request without credentials gets no error code (RFC 6750 3.1)
        challenge += f', error="invalid_token", error_description="{description}"'
    body = json.dumps({"error": "invalid_token", "error_description": description}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
