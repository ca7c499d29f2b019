"""fleet: a fleet of AI agents run as Celery workers over a shared MongoDB bet ledger.

``celery -A fleet ...`` finds the Celery app in :mod:`fleet.celery` (Celery's own
``proj/celery.py`` convention), which checks the configuration first. Importing
``fleet`` or a small part of it (errors, pipeline) builds no app and loads nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"
