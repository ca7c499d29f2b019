"""What a handler sees: the bet, the protocols, an action log, parallel lookups, retried calls.

Handlers hold business logic only. Retries, locks, claims, timing and logging
wrap them from outside (:mod:`fleet.runtime`); the context is their whole API.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pymongo.database import Database
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from fleet.agents import usage
from fleet.board import Board, Task
from fleet.definitions.catalogue import AgentSpec, Registry
from fleet.definitions.instructions import Instructions
from fleet.definitions.protocols import LoadedProtocols
from fleet.errors import ExternalCallFailed, HeartbeatStopped, TransientError
from fleet.ledger import Bet, Enforcer
from fleet.store import clock

T = TypeVar("T")

#: Exceptions an external call may raise that are worth another attempt.
RETRYABLE: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class Decision:
    """A handler's verdict on one bet: move it to ``to_stage``, or leave it (``None``)."""

    to_stage: str | None
    verdict: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def move(cls, to_stage: str, verdict: str, **evidence: Any) -> Decision:
        """Ask the enforcer to move the bet to ``to_stage``."""
        return cls(to_stage, verdict, evidence)

    @classmethod
    def stay(cls, verdict: str, **evidence: Any) -> Decision:
        """Leave the bet where it is (not ready, needs more data)."""
        return cls(None, verdict, evidence)


class StopSignal:
    """Whether, and why, a heartbeat is stopping; its bet threads and ``ctx.call`` check it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        """Ask every thread of the heartbeat to stop starting work (the first reason sticks)."""
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`HeartbeatStopped` if the heartbeat is stopping."""
        if self._event.is_set():
            raise HeartbeatStopped(self.reason or "stopped")

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake (and raise) as soon as the heartbeat is stopping: a retry backoff."""
        self._event.wait(seconds)
        self.check()


def derived_bet_id(heartbeat_id: str, key: object) -> str:
    """A bet id fixed by the heartbeat and a per-heartbeat key: a rerun creates the same ids."""
    return hashlib.sha256(f"{heartbeat_id}:{key}".encode()).hexdigest()[:12]


def retrying(loaded: LoadedProtocols, stop: StopSignal | None = None) -> Retrying:
    """The external-call policy from the protocols: N attempts, exponential backoff, jitter."""
    policy = loaded.protocols.retry
    return Retrying(
        sleep=stop.sleep if stop is not None else time.sleep,
        stop=stop_after_attempt(policy.attempts),
        # initial, 2x initial, 4x ... capped at max, plus random jitter so retries do not align.
        wait=wait_exponential(multiplier=policy.initial_delay_s, max=policy.max_delay_s)
        + wait_random(0, policy.jitter_s),
        retry=retry_if_exception_type(RETRYABLE),
        reraise=False,
    )


@dataclass
class HeartbeatContext:
    """Everything one heartbeat offers its handler; shared by all its bets."""

    spec: AgentSpec
    heartbeat_id: str
    protocols: LoadedProtocols
    registry: Registry
    enforcer: Enforcer
    board: Board
    db: Database[dict[str, Any]]
    pool: ThreadPoolExecutor
    debug: bool = False
    tasks: list[Task] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    trace: list[str] = field(default_factory=list)
    retries: int = 0
    stop: StopSignal = field(default_factory=StopSignal)
    #: The agent's instructions as the heartbeat read them at its start (None: none, or unusable).
    instructions: Instructions | None = None
    _created: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def agent(self) -> str:
        return self.spec.name

    @property
    def now(self) -> datetime:
        return clock(self.db).now()  # the store's clock: SLA ages agree across hosts

    def log(self, event: str, **details: Any) -> None:
        """Add a line to the decision trace (kept only in debug mode)."""
        if self.debug:
            extra = " ".join(f"{k}={v}" for k, v in details.items())
            with self._lock:
                self.trace.append(f"{event} {extra}".strip())

    def count(self, action: str, n: int = 1) -> None:
        """Count an action for the compact heartbeat line (``created=3``)."""
        with self._lock:
            self.actions[action] += n

    def gather(self, *lookups: Callable[[], T]) -> list[T]:
        """Run independent lookups at once on the heartbeat's bounded pool; results in order."""
        futures = [self.pool.submit(lookup) for lookup in lookups]
        try:
            wait(futures)
        except BaseException:  # the soft time limit: stop the lookups, none may outlive the heartbeat
            self.stop.set("interrupted")
            wait(futures)
            raise
        return [future.result() for future in futures]

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call an external service with the protocols' retry policy.

        After the last attempt it raises :class:`ExternalCallFailed`: the runtime
        then leaves the bet where it is and counts a failure on it. Once the heartbeat is
        stopping (time limit, lost lock) it raises :class:`HeartbeatStopped` instead of calling.
        """
        name = getattr(fn, "__name__", "call")
        self.stop.check()
        try:
            for attempt in retrying(self.protocols, self.stop):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        with self._lock:
                            self.retries += 1
                        self.log("retry", call=name, attempt=attempt.retry_state.attempt_number)
                    return fn(*args, **kwargs)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            tries = exc.last_attempt.attempt_number
            raise ExternalCallFailed(f"{name} failed after {tries} attempts: {last}") from None
        raise AssertionError("unreachable: tenacity returns or raises")

    def report_usage(
        self, *, tokens_in: int = 0, tokens_out: int = 0, cost_usd: float = 0.0, model: str = ""
    ) -> None:
        """Record model usage of this heartbeat; it counts toward the agent's daily budget."""
        usage.record(self.db, self.agent, self.heartbeat_id, tokens_in=tokens_in, tokens_out=tokens_out,
                     cost_usd=cost_usd, model=model)  # fmt: skip

    def create_bet(self, fields: dict[str, Any], bet_id: str | None = None, key: object = None) -> Bet:
        """Create a bet through the enforcer (only creator agents may).

        Without ``bet_id`` its id derives from the heartbeat's id and ``key`` (default: how
        many bets this heartbeat created before), so a retried or redelivered heartbeat
        finds the bets it already created instead of creating more.
        """
        with self._lock:
            ordinal, self._created = self._created, self._created + 1
        bet_id = bet_id or derived_bet_id(self.heartbeat_id, ordinal if key is None else key)
        bet = self.enforcer.create_bet(
            self.agent,
            fields,
            bet_id=bet_id,
            heartbeat_id=self.heartbeat_id,
            stamp=self.protocols.stamp,
        )
        self.count("created")
        self.log("created", bet=bet.bet_id)
        return bet


@dataclass
class BetContext:
    """A heartbeat's context narrowed to one bet."""

    heartbeat: HeartbeatContext
    bet: Bet

    @property
    def agent(self) -> str:
        return self.heartbeat.agent

    @property
    def spec(self) -> AgentSpec:
        return self.heartbeat.spec

    @property
    def protocols(self) -> LoadedProtocols:
        return self.heartbeat.protocols

    def options(self) -> list[str]:
        """The stages this agent may move this bet to (its owned edges from the bet's stage)."""
        pipeline = self.heartbeat.registry.pipeline
        return [t.dest for t in pipeline.edges_from(self.bet.stage) if t.owner == self.agent]

    def log(self, event: str, **details: Any) -> None:
        self.heartbeat.log(event, bet=self.bet.bet_id, **details)

    def gather(self, *lookups: Callable[[], T]) -> list[T]:
        return self.heartbeat.gather(*lookups)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.heartbeat.call(fn, *args, **kwargs)

    def report_usage(
        self, *, tokens_in: int = 0, tokens_out: int = 0, cost_usd: float = 0.0, model: str = ""
    ) -> None:
        hb = self.heartbeat
        usage.record(hb.db, hb.agent, hb.heartbeat_id, tokens_in=tokens_in, tokens_out=tokens_out,
                     cost_usd=cost_usd, model=model, bet_id=self.bet.bet_id)  # fmt: skip
