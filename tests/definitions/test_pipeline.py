"""The pipeline definition: loading, validation (every problem at once) and the rendered table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.definitions.pipeline import Kind, Pipeline, load_pipeline, render_table, validate_pipeline
from fleet.errors import PipelineError

from ..ledger.pipelines import small


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(PipelineError) as raised:
        validate_pipeline(data, "test")
    return raised.value.problems


def with_edge(**edge: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["transitions"].append({"from": edge["source"], **edge_fields(edge)})


def edge_fields(edge: dict[str, str]) -> dict[str, str]:
    return {"to": edge["dest"], "owner": edge["owner"], "kind": edge.get("kind", "advance")}


# --- valid definitions ----------------------------------------------------------------


def test_the_default_pipeline_loads_and_is_the_same_by_reference() -> None:
    # Given no reference at all, and the explicit one
    default = load_pipeline(None)
    explicit = load_pipeline("fleet.defaults.pipeline:PIPELINE")
    # Then both are the built-in pipeline: bets start at "sourced" and can end killed or scaling
    assert default == explicit
    assert default.initial_stage == "sourced"
    assert {s.name for s in default.stages if s.terminal} == {"scaling", "killed"}
    assert default.edge("sourced", "source_validated").owner == "source_validation_gate"
    assert default.problems() == []


def test_the_small_pipeline_is_valid_and_answers_lookups() -> None:
    pipeline = validate_pipeline(small(), "small")
    assert pipeline.edge("checked", "parked").kind is Kind.PARK
    assert pipeline.edge("new", "done") is None
    assert {t.dest for t in pipeline.edges_from("checked")} == {"done", "dropped", "parked"}
    assert [t.edge for t in pipeline.owned_by("reviver")] == [("parked", "checked"), ("parked", "dropped")]
    assert pipeline.owners() == {"maker", "scout", "checker", "closer", "reviver"}
    assert pipeline.is_terminal("done") and not pipeline.is_terminal("new")


def test_a_park_revive_cycle_is_allowed_only_advance_edges_must_be_acyclic() -> None:
    # Given the small pipeline, whose checked -> parked -> checked loop is park + revive
    # When it is validated
    # Then it is valid
    assert validate_pipeline(small(), "small").name == "small"


def test_a_validated_pipeline_object_validates_again() -> None:
    pipeline = validate_pipeline(small(), "small")
    assert validate_pipeline(pipeline, "again") == pipeline


# --- invalid definitions --------------------------------------------------------------


def set_initial(data: dict[str, Any]) -> None:
    data["initial_stage"] = "start"


def drop_owner(data: dict[str, Any]) -> None:
    del data["transitions"][0]["owner"]


def add_orphan_stage(data: dict[str, Any]) -> None:
    data["stages"].append({"name": "orphan"})


def no_terminal(data: dict[str, Any]) -> None:
    for stage in data["stages"]:
        stage["terminal"] = False


def duplicate_stage(data: dict[str, Any]) -> None:
    data["stages"].append({"name": "checked"})


def bad_stage_name(data: dict[str, Any]) -> None:
    data["stages"][1]["name"] = "Checked Stage"


INVALID = {
    "edge to an unknown stage": (
        with_edge(source="new", dest="nowhere", owner="checker"),
        "edge new -> nowhere names unknown stage 'nowhere'",
    ),
    "edge from an unknown stage": (
        with_edge(source="limbo", dest="done", owner="closer"),
        "edge limbo -> done names unknown stage 'limbo'",
    ),
    "unknown initial stage": (set_initial, "initial stage 'start' is not a stage"),
    "edge with two owners": (
        with_edge(source="new", dest="checked", owner="intruder"),
        "edge new -> checked has 2 owners: checker, intruder",
    ),
    "missing owner field": (drop_owner, "transitions.0.owner: Field required"),
    "unreachable stage": (add_orphan_stage, "stage 'orphan' is not reachable from 'new'"),
    "advance cycle": (
        with_edge(source="checked", dest="new", owner="closer"),
        "advance edges form a cycle: checked -> new -> checked",
    ),
    "no terminal stage": (no_terminal, "no terminal stage"),
    "edge leaving a terminal stage": (
        with_edge(source="done", dest="checked", owner="reviver", kind="revive"),
        "edge done -> checked leaves terminal stage 'done'",
    ),
    "stage defined twice": (duplicate_stage, "stage 'checked' is defined twice"),
    "edge to itself": (
        with_edge(source="parked", dest="parked", owner="reviver", kind="park"),
        "edge parked -> parked goes nowhere",
    ),
    "malformed stage name": (bad_stage_name, "stages.1.name: String should match pattern"),
}


@pytest.mark.parametrize("change, expected", INVALID.values(), ids=INVALID.keys())
def test_each_invalid_definition_is_refused_with_a_problem_naming_it(
    change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    # Given the small pipeline with one defect
    data = small()
    change(data)
    # When it is validated
    problems = problems_of(data)
    # Then the PipelineError lists a problem that names the defect
    assert any(expected in problem for problem in problems), problems


def test_several_problems_are_listed_at_once_in_one_error() -> None:
    # Given a definition with three independent defects
    data = small()
    with_edge(source="new", dest="nowhere", owner="checker")(data)
    with_edge(source="new", dest="checked", owner="intruder")(data)
    with_edge(source="done", dest="checked", owner="reviver", kind="revive")(data)
    # When it is validated
    with pytest.raises(PipelineError) as raised:
        validate_pipeline(data, "three-defects")
    # Then one error names the source and lists all three
    error = raised.value
    assert error.source == "three-defects"
    assert len(error.problems) >= 3
    text = str(error)
    assert text.startswith(f"invalid pipeline three-defects: {len(error.problems)} problem(s)")
    for part in ("unknown stage 'nowhere'", "has 2 owners", "leaves terminal stage 'done'"):
        assert part in text


def test_every_schema_problem_is_listed_at_once_too() -> None:
    data = small()
    del data["transitions"][0]["owner"]
    data["transitions"][1]["kind"] = "teleport"
    problems = problems_of(data)
    assert any("transitions.0.owner" in p for p in problems)
    assert any("transitions.1.kind" in p for p in problems)


# --- loading from references --------------------------------------------------------


def test_a_custom_pipeline_loads_from_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(small()))
    assert load_pipeline(str(path)) == validate_pipeline(small(), "small")


def test_a_custom_pipeline_loads_from_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(small()))
    assert load_pipeline(str(path)) == validate_pipeline(small(), "small")


def test_a_custom_pipeline_loads_from_module_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a module on the path holding a pipeline as data
    (tmp_path / "my_fleet_pipeline.py").write_text(f"PIPELINE = {small()!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # When it is loaded by reference
    pipeline = load_pipeline("my_fleet_pipeline:PIPELINE")
    # Then it is that pipeline
    assert pipeline.name == "small" and len(pipeline.transitions) == 7


def test_an_invalid_pipeline_in_a_file_names_the_file(tmp_path: Path) -> None:
    data = small()
    data["initial_stage"] = "start"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PipelineError) as raised:
        load_pipeline(str(path))
    assert raised.value.source == str(path)


BAD_REFERENCES = {
    "missing yaml file": ("{tmp}/absent.yaml", "cannot read"),
    "missing json file": ("{tmp}/absent.json", "cannot read"),
    "malformed yaml": ("{tmp}/broken.yaml", "cannot read"),
    "malformed json": ("{tmp}/broken.json", "cannot read"),
    "yaml that is not a mapping": ("{tmp}/list.yaml", "(top)"),
    "missing module": ("no_such_module_for_fleet:PIPELINE", "cannot import"),
    "missing attribute": ("fleet.defaults.pipeline:NOPE", "cannot import"),
    "neither file nor module:attribute": ("just-a-name", "expected a .yaml/.json file"),
}


@pytest.mark.parametrize("ref, expected", BAD_REFERENCES.values(), ids=BAD_REFERENCES.keys())
def test_bad_references_give_a_pipeline_error(tmp_path: Path, ref: str, expected: str) -> None:
    # Given files that exist but are broken
    (tmp_path / "broken.yaml").write_text("stages: [unclosed\n")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    # When the reference is loaded
    with pytest.raises(PipelineError) as raised:
        load_pipeline(ref.format(tmp=tmp_path))
    # Then one PipelineError says what is wrong
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


# --- the rendered table ---------------------------------------------------------------


@pytest.mark.parametrize(
    "pipeline", [load_pipeline(None), validate_pipeline(small(), "small")], ids=["default", "small"]
)
def test_render_table_lists_every_edge_once(pipeline: Pipeline) -> None:
    # When the handoff map is rendered
    lines = render_table(pipeline).splitlines()
    # Then there is a header, a rule and exactly one row per edge, naming its kind and owner
    assert lines[0] == "| from | to | kind | owner |"
    rows = lines[2:]
    assert len(rows) == len(pipeline.transitions)
    for t in pipeline.transitions:
        assert f"| {t.source} | {t.dest} | {t.kind.value} | {t.owner} |" in rows
