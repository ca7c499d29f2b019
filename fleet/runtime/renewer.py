"""Keeping leases alive: one scheduler thread per process renews every lease a heartbeat holds.

A heartbeat holds several leases at once (its agent lock, its slot in the wake cap, its
bets' claims, a fanned-out bet's in-flight mark); each must be pushed back every third of
its lifetime while the heartbeat runs. Before this module each holder started its own
thread per heartbeat; now a lease is one entry in a per-process schedule:

    with renewing(every_s=10, renew=lock.reacquire_or_lose, name="lock:scout"):
        ...  # the lease is renewed every 10 s until the block ends

Renewals run on a small pool, so a slow one (a store that hangs until its timeout) never
delays another lease's renewal. When the block ends, no renewal of that lease starts again
and one already running has finished (or :data:`STOP_WAIT_S` passed): a holder releases
its lease after the block without racing its own renewer.

A renewal returns ``False`` to stop renewing (its lease is lost); exceptions it raises are
logged and the lease renewed again next time (a blip must not end a live lease).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

logger = logging.getLogger("fleet.runtime.renewer")

#: Renewals that may run at once in one process (each a Redis or store round trip; one that
#: hangs until its store timeout holds a thread, so there are enough for every lease of a
#: threads-pool worker's concurrent heartbeats).
RENEWAL_THREADS = 8
#: Seconds the end of a block waits for a renewal of its lease that is running right then.
STOP_WAIT_S = 5.0

#: What a renewal returns: False stops renewing that lease (it is lost); None or True go on.
Renewal = Callable[[], bool | None]


@dataclass(eq=False)
class _Lease:
    name: str
    every_s: float
    renew: Renewal
    due: float
    stopped: bool = False
    #: Held while a renewal of this lease runs: the block's end waits on it.
    running: threading.Lock = field(default_factory=threading.Lock)


class Renewer:
    """A schedule of leases and one thread that hands each due renewal to a small pool."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._queue: list[tuple[float, int, _Lease]] = []
        self._order = itertools.count()
        self._pool = ThreadPoolExecutor(RENEWAL_THREADS, thread_name_prefix="fleet-renewal")
        self._thread = threading.Thread(target=self._loop, name="fleet-renewer", daemon=True)
        self._thread.start()

    @contextmanager
    def renewing(self, every_s: float, renew: Renewal, name: str) -> Iterator[None]:
        """Call ``renew`` every ``every_s`` seconds (first after one period) while the block runs."""
        lease = _Lease(name, every_s, renew, time.monotonic() + every_s)
        self._schedule(lease)
        try:
            yield
        finally:
            lease.stopped = True
            # A renewal running now finishes before the holder goes on to release the lease.
            if lease.running.acquire(timeout=STOP_WAIT_S):
                lease.running.release()

    def _schedule(self, lease: _Lease) -> None:
        with self._wake:
            heapq.heappush(self._queue, (lease.due, next(self._order), lease))
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._queue or self._queue[0][0] > time.monotonic():
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._wake.wait(timeout)
                _, _, lease = heapq.heappop(self._queue)
            if not lease.stopped:
                self._pool.submit(self._run, lease)

    def _run(self, lease: _Lease) -> None:
        with lease.running:
            if lease.stopped:
                return
            try:
                keep = lease.renew() is not False
            except Exception:  # a blip: the lease is renewed again before it runs out
                logger.warning("renewing %s failed; retrying next period", lease.name, exc_info=True)
                keep = True
        if keep and not lease.stopped:
            lease.due = time.monotonic() + lease.every_s
            self._schedule(lease)


_RENEWERS: dict[int, Renewer] = {}
_CREATING = threading.Lock()


def get_renewer() -> Renewer:
    """This process's renewer (threads do not survive a fork: one per pid)."""
    pid = os.getpid()
    renewer = _RENEWERS.get(pid)
    if renewer is None:
        with _CREATING:
            renewer = _RENEWERS.get(pid)
            if renewer is None:
                renewer = _RENEWERS[pid] = Renewer()
    return renewer


def renewing(every_s: float, renew: Renewal, name: str) -> AbstractContextManager[None]:
    """Renew a lease on this process's renewer while the block runs (see :class:`Renewer`)."""
    return get_renewer().renewing(every_s, renew, name)
