"""The Celery app as ``celery -A fleet worker|beat|flower|call|inspect`` finds it.

Celery's own convention: ``-A fleet`` looks for ``fleet.app``, then for this
module's ``app`` (``proj/celery.py``). Before building the app it checks every
configuration input a Celery process depends on (settings, the pipeline, the
agent catalogue, the protocols file); anything invalid is printed as one
``error:`` line naming the variable and every problem, and the process exits 2,
instead of Celery's "Unable to load celery application" traceback.
"""

from __future__ import annotations

import sys
from types import TracebackType

from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from fleet.app.celery_app import get_app
from fleet.ops.doctor import Check, catalogue_check, pipeline_check, protocols_check, settings_check

#: The setting behind each definition check, named in the error line.
VARIABLES = {
    "pipeline": "FLEET_PIPELINE",
    "catalogue": "FLEET_CATALOGUE",
    "protocols": "FLEET_PROTOCOLS_DIR",
}
#: Exit code of a Celery process refused for its configuration (a usage error, as Celery's own).
CONFIG_EXIT = 2


def configuration_problems() -> list[str]:
    """Every problem of the settings and definitions a Celery process loads (empty when valid)."""
    check, settings = settings_check()
    if settings is None:
        return [check.detail]
    checks: list[Check] = [protocols_check(settings)]
    pipeline, loaded = pipeline_check(settings)
    checks.append(pipeline)
    if loaded is not None:
        checks.append(catalogue_check(settings)[0])
    return [f"{VARIABLES.get(c.name, c.name)}: {c.detail}" for c in checks if not c.ok]


def checked_app() -> Celery:
    """The fleet's app; an invalid configuration ends the process with one line and exit code 2."""
    problems = configuration_problems()
    if problems:
        print(f"error: celery -A fleet cannot start: {' | '.join(problems)}", file=sys.stderr)
        sys.exit(CONFIG_EXIT)
    return get_app()


def _unreachable_broker(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """An uncaught "cannot reach Redis" (``celery call`` with the broker down) as one line."""
    if _is_unreachable(exc):
        from fleet.errors import first_line
        from fleet.settings import get_settings, mask_url

        where = mask_url(get_settings().broker_url)
        cause = first_line(_root(exc))
        print(f"error: cannot reach the broker at {where} (FLEET_BROKER_URL): {cause}", file=sys.stderr)
        return
    _default_hook(kind, exc, tb)


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        if isinstance(exc, RedisConnectionError):
            return exc
    return exc


def _is_unreachable(exc: BaseException) -> bool:
    # Celery's result store ends its reconnects with a bare RuntimeError caused by Redis's.
    return isinstance(exc, OperationalError | RedisConnectionError) or (
        isinstance(exc, RuntimeError) and isinstance(_root(exc), RedisConnectionError)
    )


_default_hook = sys.excepthook
sys.excepthook = _unreachable_broker
app = checked_app()
