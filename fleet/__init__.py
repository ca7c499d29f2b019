"""fleet: a fleet of AI agents run as Celery workers over a shared MongoDB bet ledger.

``celery -A fleet ...`` finds the Celery app as ``fleet.app``. It is built on first
access so that importing a small part of fleet (errors, pipeline) stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in {"app", "celery"}:
        from fleet.celery_app import get_app

        return get_app()
    raise AttributeError(f"module 'fleet' has no attribute {name!r}")
