"""The store clock: a worker whose own clock is off still dates leases and records in store time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.store import StoreClock, clock, utc_ms
from fleet.store.clock import TOLERATED_SKEW

SKEW = timedelta(minutes=10)


class AheadOfThisWorker:
    """The real store's client, seen from a worker whose clock runs ``skew`` slow:
    every ``hello.localTime`` the store answers is that much after the worker's clock."""

    def __init__(self, client: Any, skew: timedelta = SKEW) -> None:
        self.admin = self
        self._client = client
        self._skew = skew

    def command(self, name: str) -> dict[str, Any]:
        reply = dict(self._client.admin.command(name))
        reply["localTime"] = reply["localTime"] + self._skew
        return reply


def test_a_skewed_worker_reads_the_stores_time_not_its_own(db: Any) -> None:
    skewed = StoreClock(AheadOfThisWorker(db.client))
    local = datetime.now(UTC)
    store_now = skewed.now()
    # The worker's clock says ``local``; the store's is 10 minutes later: fleet uses the store's
    assert abs((store_now - local) - SKEW) < timedelta(seconds=2)
    assert abs(skewed.offset - SKEW) < timedelta(seconds=2)


def test_a_skew_within_the_tolerance_is_ignored_so_one_hosts_processes_agree(db: Any) -> None:
    # A sampling error of a few ms would otherwise order events of two processes wrongly
    nearly = StoreClock(AheadOfThisWorker(db.client, TOLERATED_SKEW / 3))
    nearly.now()
    assert nearly.offset == timedelta(0)


def test_the_clock_of_a_client_keeps_milliseconds_and_utc(db: Any) -> None:
    now = clock(db).now()
    assert now.tzinfo == UTC and now.microsecond % 1000 == 0
    assert utc_ms(now) == now


def test_an_unreachable_store_keeps_the_last_offset(db: Any) -> None:
    class Gone:
        admin = None

        def __init__(self) -> None:
            self.admin = self

        def command(self, name: str) -> dict[str, Any]:
            from pymongo.errors import ServerSelectionTimeoutError

            raise ServerSelectionTimeoutError("store down")

    lost = StoreClock(Gone())
    assert abs(lost.now() - datetime.now(UTC)) < timedelta(seconds=2)
    assert lost.offset == timedelta(0)
