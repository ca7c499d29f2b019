"""The per-process renewer: leases renewed while their block runs, never after it."""

from __future__ import annotations

import threading

from fleet.runtime.renewer import Renewer

from ..conftest import wait_for

PERIOD_S = 0.05


class Calls:
    """Counts a renewal's calls; ``result`` is what it returns."""

    def __init__(self, result: bool | None = None, fail_first: int = 0) -> None:
        self.n = 0
        self.result = result
        self.fail_first = fail_first

    def __call__(self) -> bool | None:
        self.n += 1
        if self.n <= self.fail_first:
            raise ConnectionError("a blip")
        return self.result


def test_a_lease_is_renewed_while_its_block_runs_and_never_after() -> None:
    renewer = Renewer()
    stopped = Calls()
    with renewer.renewing(PERIOD_S, stopped, "first"):
        wait_for(lambda: stopped.n >= 3, 10, "three renewals")
    after_exit = stopped.n
    # While a second lease is renewed five times, the first (ended) one is never called again
    witness = Calls()
    with renewer.renewing(PERIOD_S, witness, "witness"):
        wait_for(lambda: witness.n >= 5, 10, "five renewals of the witness")
    assert stopped.n == after_exit


def test_a_renewal_returning_false_stops_and_a_failing_one_is_retried() -> None:
    renewer = Renewer()
    lost, flaky, witness = Calls(result=False), Calls(fail_first=2), Calls()
    with renewer.renewing(PERIOD_S, lost, "lost"), renewer.renewing(PERIOD_S, flaky, "flaky"):
        wait_for(lambda: flaky.n >= 4, 10, "renewals after two failures")
        with renewer.renewing(PERIOD_S, witness, "witness"):
            wait_for(lambda: witness.n >= 5, 10, "five renewals of the witness")
    assert lost.n == 1  # lost: never renewed again


def test_a_slow_renewal_neither_delays_other_leases_nor_runs_past_its_block() -> None:
    renewer = Renewer()
    release, entered, done = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        entered.set()
        release.wait(10)
        done.set()

    fast = Calls()
    with renewer.renewing(PERIOD_S, fast, "fast"):
        block = renewer.renewing(PERIOD_S, slow, "slow")
        block.__enter__()
        wait_for(entered.is_set, 10, "the slow renewal to start")
        # While the slow renewal hangs, the other lease keeps being renewed
        before = fast.n
        wait_for(lambda: fast.n >= before + 3, 10, "renewals while another one hangs")
        # And ending the slow lease's block waits for its running renewal to finish
        threading.Timer(0.2, release.set).start()
        block.__exit__(None, None, None)
        assert done.is_set()
