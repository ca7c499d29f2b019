"""What a command works with: settings, the agent registry and the reachable database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import typer
from pymongo.database import Database

from fleet.board import Board
from fleet.definitions.catalogue import Registry, get_registry
from fleet.ledger import Enforcer
from fleet.settings import Settings, get_settings
from fleet.store import Document, database, ping_mongo, ping_redis

#: ``--procfile``, shared by ``doctor`` and ``up`` (a module-level default: Path is not immutable).
PROCFILE_OPTION: Any = typer.Option("Procfile", "--procfile", help="the Procfile naming the worker processes")


@dataclass(frozen=True)
class Ops:
    """What a command works with: settings, the agent registry and the reachable database."""

    settings: Settings
    registry: Registry
    db: Database[Document]

    @property
    def enforcer(self) -> Enforcer:
        return Enforcer(self.db, self.registry.pipeline)

    @property
    def board(self) -> Board:
        return Board(self.db)

    @property
    def noun(self) -> str:
        """What the pipeline calls one item of the ledger (``bet`` unless it names one)."""
        return self.registry.pipeline.noun


def connect(*, broker: bool = False) -> Ops:
    """Settings, registry and database; an unreachable store (or broker) stops the command here."""
    settings = get_settings()
    registry = get_registry()
    ping_mongo(settings)
    if broker:
        ping_redis(settings)
    return Ops(settings, registry, database(settings))
