"""The stage graph's geometry: no edge crosses a stage it does not join, no label overlaps another
label or a stage box (measured on the SVG the console serves, no browser needed)."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from fleet.definitions.catalogue import load_registry
from fleet.definitions.pipeline import Pipeline, load_pipeline
from fleet.web.graph import CHAR_W, stage_graph

from ..runtime.conftest import TEST_FLEET_ENV

SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlaps(self, other: Box) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def shrunk(self, by: float) -> Box:
        return Box(self.x0 + by, self.y0 + by, self.x1 - by, self.y1 - by)


def crosses(box: Box, a: tuple[float, float], b: tuple[float, float], steps: int = 400) -> bool:
    """Whether the segment a-b passes through the box's inside (sampled finely)."""
    inner = box.shrunk(1)
    for i in range(steps + 1):
        x, y = a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps
        if inner.x0 < x < inner.x1 and inner.y0 < y < inner.y1:
            return True
    return False


Edges = list[tuple[str, str, list[tuple[float, float]]]]


def parse(svg: str) -> tuple[dict[str, Box], Edges, list[Box], list[str]]:
    root = ET.fromstring(svg)
    boxes = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            r = g.find(f"{SVG}rect")
            assert r is not None
            x, y, w, h = (float(r.get(k, 0)) for k in ("x", "y", "width", "height"))
            boxes[str(g.get("data-stage"))] = Box(x, y, x + w, y + h)
    edges = []
    for g in root.iter(f"{SVG}g"):
        if str(g.get("class", "")).startswith("edge"):
            line = g.find(f"{SVG}polyline")
            assert line is not None
            points = [tuple(map(float, p.split(","))) for p in str(line.get("points")).split()]
            edges.append((str(g.get("data-from")), str(g.get("data-to")), points))  # type: ignore[arg-type]
    labels, owners = [], []
    for t in root.iter(f"{SVG}text"):
        if "owner" in str(t.get("class")).split():
            owners.append(t.text or "")
            x, y, w = float(t.get("x", 0)), float(t.get("y", 0)), len(t.text or "") * CHAR_W
            x0 = x if "start" in str(t.get("class")).split() else x - w / 2
            labels.append(Box(x0, y - 10, x0 + w, y + 2))
    return boxes, edges, labels, owners  # type: ignore[return-value]


def branching() -> Pipeline:
    """A pipeline with two stages side by side in one row and edges skipping rows."""
    return Pipeline.model_validate(
        {
            "name": "branching",
            "initial_stage": "a",
            "creators": ["maker"],
            "stages": [{"name": n} for n in ("a", "b1", "b2", "c", "parked", "killed")],
            "transitions": [
                {"from": "a", "to": "b1", "kind": "advance", "owner": "alpha_gate"},
                {"from": "a", "to": "b2", "kind": "advance", "owner": "alpha_gate"},
                {"from": "b1", "to": "c", "kind": "advance", "owner": "b_one_worker"},
                {"from": "b2", "to": "c", "kind": "advance", "owner": "b_two_worker"},
                {"from": "a", "to": "killed", "kind": "kill", "owner": "alpha_gate"},
                {"from": "b1", "to": "killed", "kind": "kill", "owner": "b_one_worker"},
                {"from": "b1", "to": "parked", "kind": "park", "owner": "b_one_worker"},
                {"from": "parked", "to": "b1", "kind": "revive", "owner": "portfolio_reviewer"},
                {"from": "parked", "to": "killed", "kind": "kill", "owner": "portfolio_reviewer"},
                {"from": "c", "to": "a", "kind": "revive", "owner": "recycler"},
            ],
        }
    )


def pipelines() -> list[Pipeline]:
    custom = load_registry(TEST_FLEET_ENV["FLEET_CATALOGUE"], TEST_FLEET_ENV["FLEET_PIPELINE"]).pipeline
    return [load_pipeline(None), custom, branching()]


@pytest.mark.parametrize("pipeline", pipelines(), ids=lambda p: p.name)
def test_no_edge_crosses_a_stage_and_no_label_overlaps(pipeline: Pipeline) -> None:
    boxes, edges, labels, owners = parse(stage_graph(pipeline, {}, {}))
    assert len(edges) == len(pipeline.transitions)
    assert {t.owner for t in pipeline.transitions} == set(owners)
    for source, dest, points in edges:
        for a, b in itertools.pairwise(points):
            hit = [n for n, box in boxes.items() if n not in (source, dest) and crosses(box, a, b)]
            assert hit == [], f"{source} -> {dest} crosses {hit}"
    for one, other in itertools.combinations(labels, 2):
        assert not one.overlaps(other), (one, other)
    for label in labels:
        assert not any(label.overlaps(box) for box in boxes.values()), label
