"""Flower's address, port and basic-auth credentials, from fleet's settings, never on a command line.

A password on argv is visible to every user of the host (``ps``), so the Procfile and
the demo start Flower with ``--conf=flowerconfig.py`` (the repository's top level; also
Flower's default file), which asks this module for ``basic_auth``. Outside the demo
there is no default password: without ``FLEET_FLOWER_PASSWORD`` Flower refuses to start.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fleet.errors import BadArgument, ConfigError
from fleet.settings import DEMO_PASSWORD, Settings, get_settings


def options(settings: Settings | None = None) -> tuple[str, int, list[str]]:
    """Flower's ``address``, ``port`` and ``basic_auth`` options, read from the settings."""
    settings = settings or get_settings()
    return settings.flower_address, settings.flower_port, basic_auth(settings)


def basic_auth(settings: Settings | None = None) -> list[str]:
    """Flower's ``basic_auth`` option; raises :class:`ConfigError` when no password is set."""
    settings = settings or get_settings()
    if not settings.flower_password:
        raise ConfigError(
            "FLEET_FLOWER_PASSWORD is not set: Flower does not start without a password (basic auth)"
        )
    if settings.flower_password == DEMO_PASSWORD:
        print(
            "warning: Flower uses the demo password; set FLEET_FLOWER_PASSWORD outside a laptop",
            file=sys.stderr,
        )
    return [f"{settings.flower_user}:{settings.flower_password}"]


def check_procfile(procfile: Path, settings: Settings | None = None) -> None:
    """Refuse (:class:`BadArgument`) a Procfile that starts Flower when no password is set:
    honcho would stop every process the moment Flower refuses to start."""
    settings = settings or get_settings()
    starts_flower = any(line.startswith("flower:") for line in procfile.read_text().splitlines())
    if starts_flower and not settings.flower_password:
        raise BadArgument(
            f"{procfile} starts Flower, which needs FLEET_FLOWER_PASSWORD (basic auth): set it first"
        )
