"""Which queues a Procfile's Celery workers serve (``fleet doctor`` checks every queue has one)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator


def procfile_queues(text: str) -> set[str]:
    """Queues named by ``-Q``/``--queues`` on the worker lines of a Procfile."""
    served: set[str] = set()
    for line in text.splitlines():
        _, _, command = line.partition(":")
        if line.lstrip().startswith("#") or "worker" not in command:
            continue
        served.update(_queues_of(shlex.split(command, comments=True)))
    return served


def _queues_of(tokens: list[str]) -> Iterator[str]:
    for i, token in enumerate(tokens):
        value = None
        if token in {"-Q", "--queues"} and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif token.startswith("--queues="):
            value = token.partition("=")[2]
        elif token.startswith("-Q") and len(token) > 2:
            value = token[2:]
        if value:
            yield from (q for q in value.split(",") if q)
