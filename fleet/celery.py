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

from celery import Celery

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


app = checked_app()
