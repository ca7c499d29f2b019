"""Webhook agents: the payload POSTed per claimed bet, a JSON decision back."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from fleet.agents.context import BetContext, HeartbeatContext
from fleet.agents.external import ExternalAgent, ExternalDecision, payload
from fleet.errors import ExternalAgentFailed, ExternalCallFailed
from fleet.settings import Settings

if TYPE_CHECKING:
    from fleet.definitions.catalogue import AgentSpec, WebhookHandler


class WebhookAgent(ExternalAgent):
    """The handler of an agent whose spec names a webhook: POST the payload, read a decision.

    Connection errors, timeouts and 5xx answers are transient: ``ctx.call`` retries them
    under the protocols' policy, and after the last attempt the bet stays where it is
    with a failure counted. Any other non-2xx answer or a body that is not a decision is
    a permanent failure of that bet (not retried).
    """

    def __init__(self, spec: AgentSpec, handler: WebhookHandler, settings: Settings | None = None) -> None:
        super().__init__(spec, settings)
        self.handler = handler

    def __call__(self, ctx: BetContext | HeartbeatContext) -> ExternalDecision | None:
        token = self._token_for(ctx)
        data = {**payload(ctx), "mcp": {"url": self.settings.mcp_endpoint, "token": token}}
        body = ctx.call(self._post, data, token)
        if not isinstance(ctx, BetContext):
            return None
        return self._decision(ctx, body, {"webhook_status": 200}, "the webhook's answer")

    def _post(self, data: dict[str, Any], token: str) -> str:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            response = httpx.post(self.handler.webhook, content=json.dumps(data, default=str),
                                  headers={**headers, "Content-Type": "application/json"},
                                  timeout=self.handler.timeout_s)  # fmt: skip
        except httpx.HTTPError as exc:  # refused, reset, timed out: worth another attempt
            raise ExternalCallFailed(f"webhook {self.handler.webhook}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 500:
            raise ExternalCallFailed(f"webhook {self.handler.webhook} answered {response.status_code}")
        if response.status_code >= 300:
            raise ExternalAgentFailed(f"webhook {self.handler.webhook} answered {response.status_code}: "
                                      f"{response.text[:300]!r}")  # fmt: skip
        return response.text
