"""What a benchmark reports: named figures with their goal, as text or as JSON lines.

Every figure is a ratio against a baseline measured in the same run (or a count, such
as store reads); nothing here asserts on time. Progress lines go to stdout, or to
stderr with ``--json`` so that stdout holds only the JSON objects.
"""

from __future__ import annotations

import json
import operator
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}
_JSON = {"on": False}


@dataclass(frozen=True)
class Metric:
    """One figure: ``value`` against ``goal`` (``">= 0.40"`` or ``"<= 1.5"``)."""

    name: str
    value: float
    goal: str
    detail: str = ""

    @property
    def met(self) -> bool:
        op, _, target = self.goal.partition(" ")
        return _COMPARE[op](self.value, float(target))

    def line(self) -> str:
        verdict = "ok  " if self.met else "MISS"
        return f"  [{verdict}] {self.name:<28} {self.value:10.3f}  goal {self.goal:<8} {self.detail}"

    def json(self) -> str:
        return json.dumps({**asdict(self), "value": round(self.value, 4), "met": self.met})


def json_mode(on: bool) -> None:
    _JSON["on"] = on


def say(text: str) -> None:
    """A progress line for people (stderr in JSON mode)."""
    print(text, file=sys.stderr if _JSON["on"] else sys.stdout, flush=True)


def publish(metric: Metric) -> Metric:
    """Print the figure: as JSON on stdout in JSON mode, as a line for people otherwise."""
    if _JSON["on"]:
        print(metric.json(), flush=True)
    else:
        say(metric.line())
    return metric
