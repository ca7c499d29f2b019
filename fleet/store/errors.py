"""The one place store errors are translated into fleet's exception tree.

Unreachable or too slow (connection, timeout, write-concern timeout) means "retry me":
:class:`~fleet.errors.LedgerUnavailable`, a :class:`~fleet.errors.TransientError`. Anything
else the store refuses (a bad document, an unsupported operation) is permanent: the
caller's subsystem error (``LedgerError`` by default, ``BoardError`` for the board...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from bson.errors import InvalidDocument
from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError

from fleet.errors import FleetError, LedgerError, LedgerUnavailable, first_line

#: pymongo errors meaning "the store is unreachable or too slow right now": transient, retry.
UNAVAILABLE_ERRORS: tuple[type[PyMongoError], ...] = (ConnectionFailure, ExecutionTimeout, WTimeoutError)


@contextmanager
def _translating(unavailable: str, refused_text: str, refused: type[FleetError]) -> Iterator[None]:
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise LedgerUnavailable(f"{unavailable}: {first_line(exc)}") from None
    except (PyMongoError, InvalidDocument) as exc:
        raise refused(f"{refused_text}: {first_line(exc)}") from None


def translated(what: str, refused: type[FleetError] = LedgerError) -> AbstractContextManager[None]:
    """Run a store call for ``what``: unreachable -> :class:`LedgerUnavailable` (transient),
    anything else the store refuses -> ``refused`` (permanent). Other exceptions pass through."""
    return _translating(f"{what}: store unavailable", f"{what}: the store refused", refused)


def reading(what: str, source: str = "") -> AbstractContextManager[None]:
    """:func:`translated` for a read of ``what`` by ``source`` (reports, audits)."""
    prefix = f"{source}: " if source else ""
    return _translating(
        f"{prefix}store unavailable reading {what}",
        f"{prefix}the store refused a read of {what}",
        LedgerError,
    )
