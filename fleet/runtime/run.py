"""What flows through a heartbeat's steps: one run's state, and how a step ends it early."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fleet.agents.context import HeartbeatContext, StopSignal
from fleet.board import Task
from fleet.definitions.catalogue import AgentSpec
from fleet.definitions.instructions import Instructions
from fleet.definitions.protocols import LoadedProtocols
from fleet.ledger import Bet
from fleet.runtime.records import HeartbeatRecord, Status
from fleet.runtime.runtime import Runtime


@dataclass(frozen=True)
class Halt:
    """A step's verdict that the run ends here, recorded with ``status`` and ``error``."""

    status: Status
    error: str


@dataclass
class Run:
    """One heartbeat, or one fanned-out bet of it (a *part*), as it goes through the steps.

    Each step reads what earlier steps set and sets its own field; none is read before
    the step that sets it has run (the order is :data:`fleet.runtime.steps.HEARTBEAT_STEPS`).
    """

    runtime: Runtime
    spec: AgentSpec
    record: HeartbeatRecord
    debug: bool
    stop: StopSignal = field(default_factory=StopSignal)
    #: The agent's open board tasks, read once its lock is held (a heartbeat's only).
    open_tasks: Future[list[Task]] | None = None
    #: A part: the bet as its heartbeat listed it, and the instructions hash that heartbeat ran with.
    view: Bet | None = None
    parent_instructions: str | None = None
    # Set by the steps, in order:
    loaded: LoadedProtocols | None = None
    instructions: Instructions | None = None
    tasks: list[Task] = field(default_factory=list)
    context: HeartbeatContext | None = None
    handler: Callable[..., Any] | None = None

    @property
    def is_part(self) -> bool:
        return self.view is not None

    @property
    def ctx(self) -> HeartbeatContext:
        """The handler's context (set by the context step)."""
        if self.context is None:
            raise RuntimeError("the context step has not run")  # a step order bug, never input
        return self.context


#: One step: reads and sets fields of the run; returns a :class:`Halt` to end it there.
Step = Callable[[Run], Halt | None]
