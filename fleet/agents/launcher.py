"""Runs an agent program so that nothing it starts outlives it: ``python launcher.py CMD...``.

Run as a script (it imports nothing of fleet). On Linux it makes itself a child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``), so a descendant that leaves the process group or the
session (``setsid``) is still re-parented to it, not to init. When the program exits, or
when the launcher gets SIGTERM (the worker's time limit), it SIGKILLs every descendant it
finds by walking ``/proc`` parent links, reaps them, and exits with the program's code
(128 + signal for a program killed by a signal).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from contextlib import suppress
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


class _Terminated(Exception):
    """SIGTERM reached the launcher: kill the program and everything it started."""


def _on_term(signum: int, frame: object) -> None:
    raise _Terminated


def _descendants(root: int) -> list[int]:
    """Pids below ``root``, read from ``/proc/*/stat`` (the parent is the 4th field)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _kill_all() -> None:
    """SIGKILL every descendant (again, until none is left: a dying one may have forked) and reap."""
    me = os.getpid()
    while pids := _descendants(me):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(block=True)
    _reap(block=False)


def _reap(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: launcher.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, _on_term)
    try:
        program = os.fork()
        if program == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                os.execvp(argv[0], argv)
            except OSError as exc:
                print(f"cannot start {argv[0]!r}: {exc}", file=sys.stderr)
                os._exit(127)
        code = 1
        while True:
            pid, status = os.waitpid(-1, 0)  # orphans re-parented here are reaped as they die
            if pid == program:
                code = os.waitstatus_to_exitcode(status)
                break
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleaning up: let nothing interrupt it
        _kill_all()
        return code if code >= 0 else 128 - code
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _kill_all()
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
