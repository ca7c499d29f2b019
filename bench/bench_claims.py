"""Claims: store reads to find a bet's newest claim, by how often the bet was claimed before.

Metric ``claim_reads_at_1000``: point reads spent by the 1,000th claim on one bet at one
seq (goal <= 23, i.e. 2·log2(1000) + 3: a gallop then a bisection). Every earlier claim
is taken and released through :class:`fleet.ledger.claims.Claims` itself, so the chain
is the one production builds. Reads at 10 and 100 are printed to show the log shape.
"""

from __future__ import annotations

from datetime import timedelta

from bench.bench_enforcer import _db
from bench.metrics import Metric, publish, say
from bench.stack import bench_stack

CLAIMS_ON_ONE_BET = 1_000
METRICS = {"claim_reads_at_1000": "<= 23"}


def measure(names: set[str]) -> None:
    from fleet.ledger.claims import Claims
    from fleet.store import ensure_indexes

    db = _db()
    ensure_indexes(db)
    reads: dict[int, int] = {}
    for n in range(1, CLAIMS_ON_ONE_BET + 1):
        claims = Claims(db, "bench", f"hb-{n}", timedelta(minutes=5))
        if not claims.try_claim("bet", 0):
            raise RuntimeError(f"claim {n} was refused")
        claims.release_all()
        reads[n] = claims.reads
    say("  reads for the n-th claim: " + ", ".join(f"n={n}: {reads[n]}" for n in (1, 10, 100, 1000)))
    if "claim_reads_at_1000" in names:
        publish(Metric("claim_reads_at_1000", reads[1000], METRICS["claim_reads_at_1000"],
                       f"{reads[10]} at 10, {reads[100]} at 100"))  # fmt: skip


def run(names: set[str]) -> None:
    with bench_stack("fleet_bench_claims"):
        measure(names)


if __name__ == "__main__":
    run(set(METRICS))
