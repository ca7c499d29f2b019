"""Handler resolution: an agent spec's ``handler`` as the callable a heartbeat runs.

``"module:function"`` is imported in the worker; ``{"command": [...]}`` and
``{"webhook": URL}`` become a :class:`~fleet.agents.command.CommandAgent` or a
:class:`~fleet.agents.webhook.WebhookAgent`. Handler paths of modules that moved keep
working (:data:`fleet.constants.MOVED_HANDLER_MODULES`), so a catalogue written for an
earlier layout still loads.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleet.agents.command import CommandAgent
from fleet.agents.external import ExternalAgent
from fleet.agents.webhook import WebhookAgent
from fleet.constants import MOVED_HANDLER_MODULES
from fleet.definitions.catalogue import AgentSpec, CommandHandler, WebhookHandler
from fleet.errors import HandlerImportError


def external_agent(spec: AgentSpec) -> ExternalAgent:
    """The callable handler of a spec whose handler is a command or a webhook."""
    if isinstance(spec.handler, WebhookHandler):
        return WebhookAgent(spec, spec.handler)
    if isinstance(spec.handler, CommandHandler):
        program = spec.handler.command[0]
        if shutil.which(program) is None and not Path(spec.handler.cwd or ".", program).is_file():
            raise HandlerImportError(f"agent {spec.name!r}: command {program!r} is not found")
        return CommandAgent(spec, spec.handler)
    raise TypeError(f"agent {spec.name!r}: handler is not external")


def resolve_handler(spec: AgentSpec) -> Callable[..., Any]:
    """Import the spec's handler; a bad path raises :class:`HandlerImportError`."""
    if isinstance(spec.handler, CommandHandler | WebhookHandler):
        return external_agent(spec)
    module_name, _, attribute = spec.handler.partition(":")
    module_name = MOVED_HANDLER_MODULES.get(module_name, module_name)
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise HandlerImportError(
            f"agent {spec.name!r}: cannot import handler {spec.handler!r}: {exc}"
        ) from None
    if not callable(handler):
        raise HandlerImportError(f"agent {spec.name!r}: handler {spec.handler!r} is not callable")
    return handler  # type: ignore[no-any-return]
