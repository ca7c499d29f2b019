"""The whole stack: a task sent through real Redis runs on a real worker and lands in FerretDB."""

from __future__ import annotations

import uuid

from fleet.constants import PROBE_TASK, PROBES

from .conftest import wait_for


def test_probe_goes_through_broker_worker_and_store(db, start_worker) -> None:
    # Given a real worker serving the ops queue
    start_worker(queues="ops")
    token = uuid.uuid4().hex
    # When a probe is sent through the broker
    from fleet.app import celery_app

    celery_app.get_app().send_task(PROBE_TASK, args=[token])
    # Then the worker's write is read back from the MongoDB-wire store
    doc = wait_for(lambda: db[PROBES].find_one({"_id": token}), 30, "the probe document")
    assert doc["_id"] == token
