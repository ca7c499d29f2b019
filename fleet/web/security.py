"""Who may use the console: HTTP basic auth on every path, and an anti-forgery token on every POST.

Basic auth as Flower does it, with the user and password from settings
(``FLEET_WEB_USER``/``FLEET_WEB_PASSWORD``, read from the environment so the
secret never shows in the process list). Unlike Flower, ``/metrics`` is behind
it too: Prometheus scrapes with ``basic_auth``.

A browser re-sends cached basic-auth credentials on a form another site posts,
so every POST must also carry a token the site can only read from our own pages
(the same-origin policy keeps them from other sites): an HMAC of the user under
a key drawn at start-up. A restart changes the key; a page from before it gets a
clear "reload the page" refusal and changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: The realm the browser shows in its login prompt.
REALM = "fleet"
#: The form field (or header) that carries the anti-forgery token.
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def credentials_match(header: str | None, user: str, password: str) -> bool:
    """True if ``header`` is ``Basic base64(user:password)`` with exactly these credentials."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_user, sep, given_password = given.partition(":")
    # Both compared, always: how long a refusal takes must not tell which half was wrong.
    same_user = hmac.compare_digest(given_user.encode(), user.encode())
    same_password = hmac.compare_digest(given_password.encode(), password.encode())
    return bool(sep) and same_user and same_password


class BasicAuth:
    """ASGI middleware: a request without the right credentials gets 401 and reaches nothing."""

    def __init__(self, app: ASGIApp, user: str, password: str) -> None:
        self.app = app
        self.user = user
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not credentials_match(
            Headers(scope=scope).get("authorization"), self.user, self.password
        ):
            response = PlainTextResponse(
                "401 unauthorized: log in with FLEET_WEB_USER and FLEET_WEB_PASSWORD",
                status_code=401,
                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class CsrfTokens:
    """Issues and checks the anti-forgery token of one server process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def token(self, user: str) -> str:
        return hmac.new(self._key, f"csrf:{user}".encode(), hashlib.sha256).hexdigest()

    def valid(self, user: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.token(user).encode(), given.encode())
