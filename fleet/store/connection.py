"""Connections to the two shared stores: the MongoDB-wire database and Redis.

Both are created here only, so timeouts and error translation are the same
everywhere: an unreachable or malformed URL becomes one :class:`FleetError` line
naming the variable, with any password masked.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConfigurationError, InvalidURI, PyMongoError

from fleet.errors import BrokerUnavailable, LedgerUnavailable, SettingsError, first_line
from fleet.settings import Settings, mask_url
from fleet.store.clock import StoreClock
from fleet.store.errors import translated

Document = dict[str, object]

#: How long a call waits for an unreachable server before giving up (ms).
SERVER_TIMEOUT_MS = 5000


def mongo_client(url: str) -> MongoClient[Document]:
    """A client for ``url``; a malformed URL raises :class:`SettingsError`."""
    try:
        return MongoClient(
            url,
            serverSelectionTimeoutMS=SERVER_TIMEOUT_MS,
            connectTimeoutMS=SERVER_TIMEOUT_MS,
            tz_aware=True,
            connect=False,
        )
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise SettingsError("FLEET_MONGO_URL", f"malformed ({mask_url(url)}): {exc}") from None


_CLIENTS: dict[tuple[str, int], MongoClient[Document]] = {}


def _cached_client(url: str) -> MongoClient[Document]:
    # One pooled client per URL and process: pymongo clients are thread-safe but not fork-safe,
    # so Celery's prefork children each build their own after the fork.
    key = (url, os.getpid())
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = mongo_client(url)
    return client


def database(settings: Settings) -> Database[Document]:
    """The fleet database; the client is shared per URL within a process."""
    return _cached_client(settings.mongo_url)[settings.mongo_db]


_CLOCKS: dict[int, StoreClock] = {}


def clock(db: Database[Document]) -> StoreClock:
    """The store's clock for ``db``'s server (one per client)."""
    key = id(db.client)
    found = _CLOCKS.get(key)
    if found is None:
        found = _CLOCKS[key] = StoreClock(db.client)
    return found


@dataclass(frozen=True)
class StoreKind:
    """What the server behind a client is, as far as fleet's choices depend on it."""

    ferretdb: bool
    replica_set: bool
    version: str


_KINDS: dict[int, StoreKind] = {}


def store_kind(db: Database[Document]) -> StoreKind:
    """FerretDB or MongoDB, replica set or not (asked once per client)."""
    key = id(db.client)
    found = _KINDS.get(key)
    if found is None:
        with translated("asking the store what it is"):
            build = db.client.admin.command("buildInfo")
            hello = db.client.admin.command("hello")
        found = StoreKind(
            ferretdb="ferretdbVersion" in build,
            replica_set="setName" in hello,
            version=str(build.get("ferretdbVersion") or build.get("version", "?")),
        )
        _KINDS[key] = found
    return found


def ping_mongo(settings: Settings) -> str:
    """Check the store answers; return its server version or raise :class:`LedgerUnavailable`."""
    client = _cached_client(settings.mongo_url)
    try:
        info = client.server_info()
    except PyMongoError as exc:
        where = mask_url(settings.mongo_url)
        raise LedgerUnavailable(f"FLEET_MONGO_URL: cannot reach {where}: {first_line(exc)}") from None
    return str(info.get("version", "?"))


def storage_problem(value: Any, where: str) -> str | None:
    """Why FerretDB cannot store ``value`` (``.``/``$`` keys, directly nested arrays), or None.

    MongoDB accepts some of these; fleet refuses them everywhere so data stays portable.
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or "." in key or key.startswith("$"):
                return f"{where}: key {key!r} (keys are strings without '.' or a leading '$')"
            problem = storage_problem(item, f"{where}.{key}")
            if problem:
                return problem
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if isinstance(item, list | tuple):
                return f"{where}[{index}]: arrays may not nest directly"
            problem = storage_problem(item, f"{where}[{index}]")
            if problem:
                return problem
    return None


def redis_client(url: str) -> redis.Redis:
    """A Redis client for ``url``; a malformed URL raises :class:`SettingsError`."""
    try:
        return redis.Redis.from_url(url, socket_timeout=SERVER_TIMEOUT_MS / 1000, socket_connect_timeout=2)
    except ValueError as exc:
        raise SettingsError("FLEET_BROKER_URL", f"malformed ({mask_url(url)}): {exc}") from None


def ping_redis(settings: Settings) -> str:
    """Check Redis answers; return its version or raise :class:`BrokerUnavailable`."""
    client = redis_client(settings.broker_url)
    try:
        info = client.info("server")
    except redis.RedisError as exc:
        where = mask_url(settings.broker_url)
        raise BrokerUnavailable(f"FLEET_BROKER_URL: cannot reach {where}: {first_line(exc)}") from None
    finally:
        client.close()
    return str(info.get("redis_version", "?"))


def close_clients() -> None:
    """Close every cached MongoDB client (end of a process or a test session)."""
    for (_, pid), client in _CLIENTS.items():
        if pid == os.getpid():
            client.close()
    _CLIENTS.clear()
    _CLOCKS.clear()
    _KINDS.clear()


atexit.register(close_clients)
