"""The README opens with the two set-up commands and shows the pipeline generated from data."""

from __future__ import annotations

from fleet.definitions.pipeline import load_pipeline, render_stages, render_table

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in block] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_pipeline_section_is_the_generated_one() -> None:
    pipeline = load_pipeline(None)
    section = README.split("<!-- pipeline:start -->\n", 1)[1].split("\n<!-- pipeline:end -->", 1)[0]
    assert section == f"{render_stages(pipeline)}\n\n{render_table(pipeline)}"
