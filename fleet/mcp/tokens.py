"""Agent identity: short-lived signed bearer tokens, each naming exactly one agent.

A token is a JWT (HS256, PyJWT) with ``sub`` = the agent, ``exp``/``iat``, ``aud`` (the
server it is for, ``FLEET_MCP_AUDIENCE``), ``iss`` (who minted it, ``FLEET_MCP_ISSUER``), an
optional ``hb`` (the heartbeat that minted it) and an optional ``bets`` scope (the bet ids it
may touch). The server refuses a token whose lifetime (``exp - iat``) exceeds
``FLEET_MCP_TOKEN_MAX_TTL_S`` (a day), whatever signed it (a leaked token must die on its
own). Its header carries ``kid``, the id of the signing key: only the current key
(``FLEET_MCP_KEY_ID`` + ``FLEET_MCP_SECRET``) is accepted, so changing both rotates every
outstanding token out. The secret comes from settings (or, for a local fleet, a generated
file under FLEET_HOME) and is never logged or printed.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from fleet.errors import ConfigError, TokenRejected
from fleet.settings import Settings

ALGORITHM = "HS256"
#: Clock skew tolerated between the minting and the checking host, seconds.
LEEWAY_S = 5
#: Longest claimed agent name kept from a token that did not verify (the rest is cut).
MAX_CLAIMED_CHARS = 64
#: The generated secret of a local fleet, under FLEET_HOME (see :func:`ensure_secret`).
SECRET_FILENAME = "mcp_secret"
#: Shortest usable secret: HS256 keys under 32 bytes are brute-forceable (RFC 7518 3.2).
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Identity:
    """Who is calling: the agent a valid token names, and what it is limited to."""

    agent: str
    heartbeat_id: str | None
    expires_at: float
    bets: frozenset[str] | None  # None: any bet

    def allows(self, bet_id: str) -> bool:
        """True when the token's scope covers ``bet_id`` (an unscoped token covers every bet)."""
        return self.bets is None or bet_id in self.bets


def secret_file(settings: Settings) -> Path:
    """Where a local fleet keeps its generated signing secret when FLEET_MCP_SECRET is unset."""
    return settings.home / SECRET_FILENAME


def _secret(settings: Settings) -> bytes:
    if settings.mcp_secret is not None:
        secret = settings.mcp_secret.get_secret_value().encode()
    elif secret_file(settings).is_file():
        secret = secret_file(settings).read_bytes().strip()
    else:
        raise ConfigError(
            f"FLEET_MCP_SECRET is not set and {secret_file(settings)} does not exist (`fleet mcp` creates it)"
        )
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"FLEET_MCP_SECRET must be at least {MIN_SECRET_BYTES} bytes long")
    return secret


def _create_secret_file(path: Path) -> None:
    """Write a fresh secret to ``path`` unless it exists; it appears complete, and only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48))
    try:
        os.link(draft, path)  # atomic, and fails if another process linked its secret first
    except FileExistsError:
        pass  # theirs wins: every process must sign with the same key
    finally:
        draft.unlink(missing_ok=True)


def ensure_secret(settings: Settings) -> None:
    """Make sure a signing secret exists: FLEET_MCP_SECRET, else a generated file under FLEET_HOME.

    The file (mode 0600) lets a local fleet (``fleet up``: server and workers on one host,
    one FLEET_HOME) work without configuration; a fleet spread over hosts sets the variable.
    """
    path = secret_file(settings)
    if settings.mcp_secret is None and not path.exists():
        try:
            _create_secret_file(path)
        except OSError as exc:
            raise ConfigError(f"cannot create {path}: {exc.strerror}; set FLEET_MCP_SECRET instead") from None
    _secret(settings)


def mint(
    settings: Settings,
    agent: str,
    ttl_s: float,
    *,
    heartbeat_id: str | None = None,
    bets: Iterable[str] | None = None,
) -> str:
    """A token naming ``agent`` for ``ttl_s`` seconds, optionally scoped to ``bets``."""
    longest = settings.mcp_token_max_ttl_s
    if not 0 < ttl_s <= longest:
        raise ConfigError(f"token lifetime must be in (0, {longest:g}] seconds, got {ttl_s:g}")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": agent,
        "iat": now,
        "exp": now + int(max(ttl_s, 1)),
        "aud": settings.mcp_audience,
        "iss": settings.mcp_issuer,
    }
    if heartbeat_id is not None:
        claims["hb"] = heartbeat_id
    if bets is not None:
        claims["bets"] = sorted(set(bets))
    return jwt.encode(claims, _secret(settings), algorithm=ALGORITHM, headers={"kid": settings.mcp_key_id})


def verify(settings: Settings, token: str | None) -> Identity:
    """The identity ``token`` proves, or :class:`TokenRejected` saying why not."""
    if not token:
        raise TokenRejected("no bearer token")
    claimed = claimed_agent(token)
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError:
        raise TokenRejected("malformed token", claimed) from None
    if kid != settings.mcp_key_id:
        raise TokenRejected(f"signed with key {kid!r}, which was rotated out", claimed)
    try:
        claims = jwt.decode(
            token,
            _secret(settings),
            algorithms=[ALGORITHM],
            leeway=LEEWAY_S,
            audience=settings.mcp_audience,
            issuer=settings.mcp_issuer,
            options={"require": ["sub", "exp", "iat", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenRejected("expired", claimed) from None
    except jwt.InvalidSignatureError:
        raise TokenRejected("bad signature (forged or signed with another secret)", claimed) from None
    except jwt.InvalidAudienceError:
        raise TokenRejected(f"not for this server (aud must be {settings.mcp_audience!r})", claimed) from None
    except jwt.InvalidIssuerError:
        raise TokenRejected(f"unknown issuer (iss must be {settings.mcp_issuer!r})", claimed) from None
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"invalid token: {str(exc)[:200]}", claimed) from None
    _check_lifetime(settings, claims, claimed)
    return _identity(claims, claimed)


def _check_lifetime(settings: Settings, claims: dict[str, Any], claimed: str | None) -> None:
    """Refuse a token minted to live longer than this server allows (a leak must expire)."""
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)):
        raise TokenRejected("exp and iat must be integers", claimed)
    if exp - iat > settings.mcp_token_max_ttl_s:
        raise TokenRejected(f"lifetime over the server's {settings.mcp_token_max_ttl_s:g} s limit", claimed)


def _identity(claims: dict[str, Any], claimed: str | None) -> Identity:
    agent, bets = claims.get("sub"), claims.get("bets")
    if not isinstance(agent, str) or not agent:
        raise TokenRejected("the token names no agent", claimed)
    if bets is not None and not (isinstance(bets, list) and all(isinstance(b, str) for b in bets)):
        raise TokenRejected("malformed bet scope", claimed)
    hb = claims.get("hb")
    return Identity(
        agent=agent,
        heartbeat_id=hb if isinstance(hb, str) else None,
        expires_at=float(claims["exp"]),
        bets=None if bets is None else frozenset(bets),
    )


def claimed_agent(token: str) -> str | None:
    """The agent a token claims to be, unchecked and cut to :data:`MAX_CLAIMED_CHARS`:
    only for recording a refusal."""
    try:
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.InvalidTokenError:
        return None
    return cap(sub, MAX_CLAIMED_CHARS) if isinstance(sub, str) else None


def cap(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters (marked with a trailing ``…`` when cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
