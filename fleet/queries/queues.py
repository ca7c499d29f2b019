"""Messages waiting per queue, read through kombu's own queue API (whatever the broker)."""

from __future__ import annotations

from collections.abc import Iterable

import redis
from kombu.connection import Connection
from kombu.exceptions import ChannelError, OperationalError

from fleet.errors import BrokerUnavailable, first_line

#: Seconds to wait for the broker before ``fleet status`` gives up on queue depths.
CONNECT_TIMEOUT_S = 5.0


def queue_depths(broker_url: str, queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting per queue (a queue no message has created yet has 0).

    A passive ``queue_declare`` is kombu's public way to ask a queue's size: on Redis it
    sums the queue's priority lists, and being passive it never creates anything.
    """
    names = list(queues)
    try:
        connection = Connection(broker_url, connect_timeout=CONNECT_TIMEOUT_S)  # type: ignore[no-untyped-call]
        with connection as conn, conn.channel() as channel:
            return {name: _depth(channel, name) for name in names}
    except (OperationalError, redis.RedisError, OSError) as exc:
        raise BrokerUnavailable(f"cannot read queue lengths: {first_line(exc)}") from None


def _depth(channel: object, queue: str) -> int:
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)  # type: ignore[attr-defined]
    except ChannelError:
        return 0  # passive declare of a queue that does not exist yet: nothing waits in it
