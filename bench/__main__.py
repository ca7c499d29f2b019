"""``python -m bench [--json] [NAME ...]``: run the benchmarks, or those that produce NAME.

NAME is a metric (``enforcer_vs_insert_1p``) or a module (``enforcer``, ``bench_growth``).
Every module under ``bench/bench_*.py`` declares ``METRICS`` (name -> goal) and
``run(names)``, which starts its own services and publishes those metrics.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from bench.metrics import json_mode, say


def modules() -> list[ModuleType]:
    found = sorted(path.stem for path in Path(__file__).parent.glob("bench_*.py"))
    return [importlib.import_module(f"bench.{name}") for name in found]


def plan(filters: list[str]) -> list[tuple[ModuleType, set[str]]]:
    """(module, metric names to run) for the filters; every metric when there are none."""
    chosen: list[tuple[ModuleType, set[str]]] = []
    for module in modules():
        metrics = set(module.METRICS)
        short = module.__name__.rsplit(".", 1)[-1]
        if not filters or any(f in short for f in filters):
            chosen.append((module, metrics))
        elif wanted := metrics & set(filters):
            chosen.append((module, wanted))
    return chosen


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    filters = [arg for arg in argv if arg != "--json"]
    json_mode(as_json)
    chosen = plan(filters)
    if not chosen:
        known = sorted(name for module in modules() for name in module.METRICS)
        print(
            f"error: no benchmark matches {' '.join(filters)}; metrics: {', '.join(known)}", file=sys.stderr
        )
        return 2
    for module, names in chosen:
        say(f"\n=== {module.__name__} ===")
        module.run(names)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
