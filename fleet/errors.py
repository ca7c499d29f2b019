"""The one exception tree of fleet.

Every error fleet raises on purpose derives from :class:`FleetError`. Errors are
grouped by subsystem and carry the fields an operator needs. The split that
matters for retries is :class:`TransientError` (the world is briefly broken:
retry) versus everything else (the request is wrong: retrying cannot help).
Tenacity retries external calls on any transient error (:data:`TRANSIENT_ERRORS`);
Celery's ``autoretry_for`` re-runs a whole heartbeat only for
:class:`ServiceUnavailable` (:data:`TASK_RETRY_ERRORS`): a failed external call is
not a failed task.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class FleetError(Exception):
    """Root of every error fleet raises on purpose; ``str()`` is one operator line."""


# --- transient: retrying may help -------------------------------------------------


class TransientError(FleetError):
    """A dependency is briefly unavailable; the same call may succeed later."""


class ServiceUnavailable(TransientError):
    """The store or the broker is unreachable: the only failure that retries a whole heartbeat."""


class LedgerUnavailable(ServiceUnavailable):
    """The MongoDB-wire store cannot be reached or did not answer in time."""


class BrokerUnavailable(ServiceUnavailable):
    """The Redis broker cannot be reached or did not answer in time."""


class LockUnavailable(BrokerUnavailable):
    """An agent lock could not be taken because Redis cannot be reached."""


class ExternalCallFailed(TransientError):
    """An external service (ads API, CRM, ...) failed; raised by handlers to ask for a retry.

    ``ctx.call`` retries it; once its attempts are spent it stays inside the heartbeat
    (a failed call is not a failed task), so Celery never re-runs a heartbeat for it.
    """


# --- configuration ----------------------------------------------------------------


class ConfigError(FleetError):
    """A setting, definition or file is invalid; fix the input, do not retry."""


class SettingsError(ConfigError):
    """An environment variable (``FLEET_*``) is malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class DefinitionError(ConfigError):
    """A declarative definition (pipeline, catalogue, protocols) has problems; lists them all."""

    what = "definition"

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listed = "; ".join(self.problems)
        super().__init__(f"invalid {self.what} {source}: {len(self.problems)} problem(s): {listed}")


class PipelineError(DefinitionError):
    """The pipeline definition (stages and handoff map) is invalid."""

    what = "pipeline"


class CatalogueError(DefinitionError):
    """The agent catalogue (agent specs) is invalid or does not match the pipeline."""

    what = "agent catalogue"


class ProtocolError(DefinitionError):
    """The shared protocols file is missing, malformed or has an unknown version."""

    what = "protocols"


class ServiceError(FleetError):
    """A local service (Redis, FerretDB) could not be installed, built or started."""


# --- the ledger and the enforcer --------------------------------------------------


class LedgerError(FleetError):
    """A ledger operation was refused or found the ledger inconsistent."""


class UnknownBet(LedgerError):
    """No bet has this id."""

    def __init__(self, bet_id: str) -> None:
        super().__init__(f"unknown bet {clipped(bet_id)}")
        self.bet_id = bet_id


class UnknownStage(LedgerError):
    """A stage name the pipeline does not have."""

    def __init__(self, stage: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown stage {stage!r} (stages: {', '.join(known)})")
        self.stage = stage


class DuplicateBet(LedgerError):
    """A bet with this id already exists."""

    def __init__(self, bet_id: str) -> None:
        super().__init__(f"bet {bet_id!r} already exists")
        self.bet_id = bet_id


class CorruptBet(LedgerError):
    """A bet or transition document in the store does not parse."""

    def __init__(self, bet_id: str, problem: str) -> None:
        super().__init__(f"bet {bet_id!r} is corrupt: {problem}")
        self.bet_id = bet_id
        self.problem = problem


class InvalidBetData(LedgerError):
    """Bet fields or evidence cannot be stored on every backend; nothing was written."""

    def __init__(self, bet_id: str | None, problem: str) -> None:
        super().__init__(f"bet {bet_id!r}: cannot store: {problem}")
        self.bet_id = bet_id
        self.problem = problem


class TransitionRefused(LedgerError):
    """The enforcer refused a stage change; the refusal is recorded and nothing else changes."""

    reason = "refused"

    def __init__(
        self,
        bet_id: str | None,
        agent: str,
        from_stage: str | None,
        to_stage: str,
        detail: str = "",
    ) -> None:
        self.bet_id = bet_id
        self.agent = agent
        self.from_stage = from_stage
        self.to_stage = to_stage
        self.detail = detail
        move = f"{from_stage or '(new)'} -> {to_stage}"
        text = f"{self.reason}: bet {bet_id!r}, agent {agent!r}, {move}"
        super().__init__(f"{text}: {detail}" if detail else text)


class IllegalTransition(TransitionRefused):
    """The handoff map has no edge from the bet's stage to the target stage."""

    reason = "illegal transition"


class NotOwner(TransitionRefused):
    """The edge exists but another agent owns it (or the agent may not create bets)."""

    reason = "not the owner"


class StaleBet(TransitionRefused):
    """The caller's sequence number is not the bet's latest: another writer won the race."""

    reason = "stale bet (lost race)"


# --- runtime ----------------------------------------------------------------------


class RuntimeFleetError(FleetError):
    """A heartbeat could not run as asked."""


class UnknownAgent(RuntimeFleetError):
    """No agent spec has this name."""

    def __init__(self, agent: str) -> None:
        super().__init__(f"unknown agent {clipped(agent)}")
        self.agent = agent


class BadTaskArguments(RuntimeFleetError):
    """A task was sent with arguments of the wrong type, or extra ones."""


class BadArgument(FleetError):
    """A command-line argument is out of range; the command did nothing."""


class HandlerImportError(RuntimeFleetError):
    """An agent spec names a handler that cannot be imported."""


class HeartbeatStopped(RuntimeFleetError):
    """The heartbeat is stopping (time limit reached or agent lock lost): no new work starts."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"heartbeat stopping: {reason}")
        self.reason = reason


class ExternalAgentFailed(RuntimeFleetError):
    """An external agent (command or webhook) failed: bad exit, bad output, time limit; nothing moved."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        #: What the bet's record entry keeps of the run (exit code, seconds, output tails).
        self.report: dict[str, Any] = dict(report or {})


class OverBudget(RuntimeFleetError):
    """The agent's remaining budget today cannot cover what the bet (or run) is expected to cost."""


class AgentToolsUnavailable(RuntimeFleetError):
    """The MCP server does not answer or refuses the agent's token: the agent is not run blind."""


# --- agent identity (MCP tokens) ----------------------------------------------------


class TokenRejected(FleetError):
    """A bearer token is missing, forged, expired, signed by a rotated key or used out of scope."""

    def __init__(self, reason: str, agent: str | None = None) -> None:
        super().__init__(f"token rejected: {reason}")
        self.reason = reason
        #: The agent the token claims to be (unverified when the signature failed), if any.
        self.agent = agent


# --- the task board ---------------------------------------------------------------


class BoardError(FleetError):
    """A task-board operation was refused."""


class UnknownTask(BoardError):
    """No board task has this id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"unknown board task {clipped(task_id)}")
        self.task_id = task_id


class TaskClosed(BoardError):
    """The board task is already closed (done); a closed task never changes again."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"board task {task_id!r} is already closed")
        self.task_id = task_id


class CorruptTask(BoardError):
    """A board task or task event document in the store does not parse."""

    def __init__(self, task_id: str, problem: str) -> None:
        super().__init__(f"board task {task_id!r} is corrupt: {problem}")
        self.task_id = task_id
        self.problem = problem


#: Characters of an untrusted value (a task argument, a command-line id) an error message quotes.
CLIP_CHARS = 80


def clipped(value: object, limit: int = CLIP_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters: untrusted input never floods a log line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# --- the web console ---------------------------------------------------------------


class WebConsoleError(ConfigError):
    """The web console cannot start as configured (e.g. the default password off loopback)."""


class CsrfRefused(FleetError):
    """A form post without the page's anti-forgery token; nothing was changed."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: pymongo's and redis' messages run to kilobytes."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:limit]


def validation_problems(exc: Any) -> list[str]:
    """Every problem of a pydantic ``ValidationError`` as ``"where: message"``."""
    return [f"{'.'.join(str(part) for part in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]


def validation_problem(exc: Any) -> str:
    """The first problem of a pydantic ``ValidationError``, and how many more there are."""
    problems = validation_problems(exc)
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}"


#: Errors worth retrying an external call for (tenacity, inside ``ctx.call``).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError,)
#: Errors that make Celery retry a whole heartbeat (``autoretry_for``): only an unreachable
#: store or broker. Everything else stays inside the heartbeat and is on its record.
TASK_RETRY_ERRORS: tuple[type[BaseException], ...] = (ServiceUnavailable,)
