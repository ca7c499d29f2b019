"""``fleet.probe``: proves broker -> worker -> store end to end (used by doctor and tests)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from fleet.app import celery_app
from fleet.constants import PROBE_TASK, PROBES
from fleet.errors import BadTaskArguments
from fleet.settings import get_settings
from fleet.store import database

app = celery_app.get_app()


@app.task(name=PROBE_TASK)
def probe(token: str) -> str:
    """Write ``token`` with this worker's host name to the probes collection."""
    if not isinstance(token, str) or not token:
        raise BadTaskArguments(f"{PROBE_TASK}: token must be a non-empty string")
    doc = {"_id": token, "host": socket.gethostname(), "at": datetime.now(UTC)}
    database(get_settings())[PROBES].replace_one({"_id": token}, doc, upsert=True)
    return token
