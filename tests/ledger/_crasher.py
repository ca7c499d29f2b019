"""Writers that die between the commit point and the projection write (run in a spawned child)."""

from __future__ import annotations

import os
import signal
from typing import Any


def _enforcer(pipeline_data: dict[str, Any]) -> Any:
    from fleet.definitions.pipeline import validate_pipeline
    from fleet.ledger import Enforcer
    from fleet.settings import get_settings
    from fleet.store import database

    return Enforcer(database(get_settings()), validate_pipeline(pipeline_data, "crash"))


def advance_then_die(pipeline_data: dict[str, Any], bet_id: str, to_stage: str, agent: str, seq: int) -> None:
    """Run the first half of ``Enforcer.advance`` (checks, then the commit insert), then SIGKILL."""
    from fleet.ledger.enforcer import _Attempt

    enforcer = _enforcer(pipeline_data)
    attempt = _Attempt(bet_id, agent, to_stage, seq, "hb-crash", None)
    record = enforcer._plan_advance(attempt, "crash", None, None)
    if not enforcer.ledger.commit(record):
        raise SystemExit(3)  # the parent checks the exit status: this is not the crash it wants
    os.kill(os.getpid(), signal.SIGKILL)


def create_then_die(pipeline_data: dict[str, Any], bet_id: str, agent: str) -> None:
    """Commit a bet's creation record the way ``Enforcer.create_bet`` does, then SIGKILL."""
    from fleet.ledger import CREATE_KIND
    from fleet.ledger.enforcer import _Attempt

    enforcer = _enforcer(pipeline_data)
    attempt = _Attempt(bet_id, agent, enforcer.pipeline.initial_stage, None, "hb-crash", None)
    record = enforcer._new_record(attempt, bet_id, 0, None, CREATE_KIND, "created", None, {"k": 1})
    if not enforcer.ledger.commit(record):
        raise SystemExit(3)
    os.kill(os.getpid(), signal.SIGKILL)
