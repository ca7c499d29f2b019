"""An LLM-backed validation gate as a fleet command agent.

Catalogue entry (see README, "Running real agents")::

    {"name": "source_validation_gate", ..., "instructions": "source_validation_gate.md",
     "handler": {"command": ["python", "examples/llm_gate.py"], "timeout_s": 120}}

It reads the payload on stdin (its instructions, the protocols, the bet, ``your_moves``),
asks a model for a verdict and prints one JSON decision with the usage for the budget.
With ``ANTHROPIC_API_KEY`` set it calls the Anthropic Messages API (model
``LLM_GATE_MODEL``, prices ``LLM_GATE_USD_PER_MTOK_IN`` / ``_OUT`` per million tokens);
without a key it decides nothing (the bet stays, with a verdict saying why), so a
fleet without a model never moves bets on a guess. Only the standard library is used.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

API_URL = "https://api.anthropic.com/v1/messages"
DEFAULT_MODEL = "claude-3-5-haiku-latest"
TIMEOUT_S = 60


def prompt(payload: dict[str, Any]) -> tuple[str, str]:
    """(system, user) messages: the agent's instructions and rules, then the bet and the choices."""
    instructions = (payload.get("instructions") or {}).get(
        "text"
    ) or f"You are {payload['agent']}: {payload['role']}."
    system = f"{instructions}\n\nShared protocols (YAML):\n{payload['protocols']['text']}"
    user = (
        f"Bet:\n{json.dumps(payload['bet'], indent=2)}\n\n"
        f"Your possible moves: {json.dumps(payload['your_moves'])}. Answer with one JSON object only: "
        '{"to_stage": <one of your moves, or null to leave the bet>, "verdict": "<short reason>", '
        '"evidence": {<what you relied on>}}'
    )
    return system, user


def ask_model(key: str, system: str, user: str) -> tuple[str, dict[str, int]]:
    body = {"model": os.environ.get("LLM_GATE_MODEL", DEFAULT_MODEL), "max_tokens": 400,
            "system": system, "messages": [{"role": "user", "content": user}]}  # fmt: skip
    request = urllib.request.Request(
        API_URL, data=json.dumps(body).encode(), method="POST",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        answer = json.load(response)
    text = "".join(part.get("text", "") for part in answer.get("content", []))
    return text, answer.get("usage", {})


def decide(payload: dict[str, Any], text: str) -> dict[str, Any]:
    """The model's answer as a decision; anything off the menu leaves the bet where it is."""
    try:
        start, end = text.index("{"), text.rindex("}") + 1
        answer = json.loads(text[start:end])
    except ValueError:
        return {"to_stage": None, "verdict": "model answer was not JSON", "evidence": {"answer": text[:500]}}
    to_stage = answer.get("to_stage")
    if to_stage is not None and to_stage not in payload["your_moves"]:
        return {"to_stage": None, "verdict": f"model chose {to_stage!r}, not one of my moves", "evidence": {}}
    evidence = answer.get("evidence") if isinstance(answer.get("evidence"), dict) else {}
    return {
        "to_stage": to_stage,
        "verdict": str(answer.get("verdict", ""))[:200] or "no reason",
        "evidence": evidence,
    }


def cost(usage: dict[str, int]) -> float:
    per_in = float(os.environ.get("LLM_GATE_USD_PER_MTOK_IN", "1.0"))
    per_out = float(os.environ.get("LLM_GATE_USD_PER_MTOK_OUT", "5.0"))
    return (usage.get("input_tokens", 0) * per_in + usage.get("output_tokens", 0) * per_out) / 1_000_000


def main() -> int:
    payload = json.load(sys.stdin)
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        print(json.dumps({"to_stage": None, "verdict": "no model configured (ANTHROPIC_API_KEY unset)"}))
        return 0
    system, user = prompt(payload)
    try:
        text, usage = ask_model(key, system, user)
    except (urllib.error.URLError, TimeoutError) as exc:
        print(f"model call failed: {exc}", file=sys.stderr)
        return 1  # a failure: fleet leaves the bet and counts it
    decision = decide(payload, text)
    decision["usage"] = {
        "tokens_in": usage.get("input_tokens", 0),
        "tokens_out": usage.get("output_tokens", 0),
        "cost_usd": cost(usage),
        "model": os.environ.get("LLM_GATE_MODEL", DEFAULT_MODEL),
    }
    print(json.dumps(decision))
    return 0


if __name__ == "__main__":
    sys.exit(main())
