"""One clock for every time fleet stores or compares: the store's.

Leases (claims), SLA checks, records and board events are compared across workers on
different hosts. Each worker's own clock may be skewed, so fleet reads the store's
clock (``hello.localTime``, answered by MongoDB and FerretDB alike) and keeps the
offset to its local clock, re-sampled every :data:`RESAMPLE_S`. The residual error is
half a round trip plus the drift between samples (milliseconds on a LAN).

An offset below :data:`TOLERATED_SKEW` is taken as zero: clocks that agree that well
(NTP, or processes on one host) are used as they are, so processes on one host never
disagree by a sampling error, while a worker skewed by more is corrected. If the store
cannot be asked, the last offset (initially zero: the local clock) is kept: the store
call that follows fails anyway and is retried.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

#: Seconds between two samples of the store's clock.
RESAMPLE_S = 60.0
#: Skew small enough to ignore (leases last seconds to minutes; a sample errs by half a round trip).
TOLERATED_SKEW = timedelta(milliseconds=250)


def utc_ms(stamp: datetime) -> datetime:
    """``stamp`` in UTC at millisecond precision, so a stored date reads back equal."""
    stamp = stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


class StoreClock:
    """``now()`` on the store's clock; thread-safe, one per client."""

    def __init__(self, client: Any, resample_s: float = RESAMPLE_S) -> None:
        self._client = client
        self._resample_s = resample_s
        self._offset = timedelta(0)
        self._sampled_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def offset(self) -> timedelta:
        """Store time minus local time, as last sampled."""
        return self._offset

    def now(self) -> datetime:
        """The store's current time (UTC, milliseconds)."""
        if time.monotonic() - self._sampled_at > self._resample_s:
            self.sample()
        return utc_ms(datetime.now(UTC) + self._offset)

    def sample(self) -> None:
        """Ask the store for its time and keep the offset; keep the old one on failure."""
        with self._lock:
            before = datetime.now(UTC)
            try:
                reply = self._client.admin.command("hello")
            except PyMongoError:
                self._sampled_at = time.monotonic() - self._resample_s + 1.0  # try again in a second
                return
            after = datetime.now(UTC)
            server = reply.get("localTime")
            if isinstance(server, datetime):
                midpoint = before + (after - before) / 2
                offset = utc_ms(server) - midpoint
                self._offset = offset if abs(offset) >= TOLERATED_SKEW else timedelta(0)
            self._sampled_at = time.monotonic()
