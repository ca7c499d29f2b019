"""The LLM gate example turns a model's answer into a decision and never leaves its menu."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.conftest import ROOT


def llm_gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llm_gate", ROOT / "examples" / "llm_gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PAYLOAD = {"your_moves": ["source_validated", "killed"]}


def test_a_valid_answer_is_the_decision() -> None:
    text = 'Sure: {"to_stage": "killed", "verdict": "no pain", "evidence": {"why": "x"}}'
    assert llm_gate().decide(PAYLOAD, text) == {
        "to_stage": "killed",
        "verdict": "no pain",
        "evidence": {"why": "x"},
    }


def test_an_answer_off_the_menu_or_not_json_leaves_the_bet() -> None:
    gate = llm_gate()
    assert gate.decide(PAYLOAD, '{"to_stage": "scaling", "verdict": "!"}')["to_stage"] is None
    assert gate.decide(PAYLOAD, "I would pass it")["to_stage"] is None
    assert gate.cost({"input_tokens": 1_000_000, "output_tokens": 0}) == 1.0
