"""Publishing a task by name, as ``fleet trigger`` and ``fleet doctor --probe`` do."""

from __future__ import annotations

from typing import Any

from kombu.exceptions import OperationalError

from fleet.errors import BrokerUnavailable, first_line


def send(task: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> str:
    """Publish one task through the broker; return its id (:class:`BrokerUnavailable` if it cannot)."""
    from fleet.app.celery_app import get_app  # lazy: most commands never publish

    try:
        return str(get_app().send_task(task, args=args, kwargs=kwargs or {}).id)
    except OperationalError as exc:
        raise BrokerUnavailable(f"cannot send {task}: {first_line(exc)}") from None
