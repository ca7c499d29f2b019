"""Run every ``bench/bench_*.py`` module's ``main()``, or those whose name contains an argument."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def modules(filters: list[str]) -> list[str]:
    """Names of the bench modules to run, in a stable order."""
    found = sorted(path.stem for path in Path(__file__).parent.glob("bench_*.py"))
    return [name for name in found if not filters or any(f in name for f in filters)]


def main(argv: list[str]) -> int:
    names = modules(argv)
    if not names:
        print(f"no bench module matches {argv}", file=sys.stderr)
        return 2
    for name in names:
        print(f"\n=== bench.{name} ===", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
