"""Pictures drawn from definitions: the pipeline's stage graph and the schedule's load chart, as SVG.

Both are computed from data (the :class:`~fleet.definitions.pipeline.Pipeline`, per-hour
figures), never drawn by hand, so a custom pipeline draws itself. Layout of the
stage graph: the stages reached from the initial stage by ``advance`` edges go
in rows by their longest advance path (the main flow, top to bottom); every
other stage (parked, killed, ...) goes in a side column beside the stages that
lead to it. Each edge carries its owner's name. Text is escaped here: stage and
agent names come from user-supplied definitions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from fleet.definitions.pipeline import Kind, Pipeline, Transition

NODE_W, NODE_H = 190, 46
ROW_H, COL_W, SIDE_GAP = 96, 250, 330
MARGIN = 20
EDGE_COLOURS = {Kind.ADVANCE: "#2b6cb0", Kind.KILL: "#c53030", Kind.PARK: "#b7791f", Kind.REVIVE: "#2f855a"}


@dataclass(frozen=True)
class Point:
    x: float
    y: float


def advance_ranks(pipeline: Pipeline) -> dict[str, int]:
    """Longest path over ``advance`` edges from the initial stage (advance edges are acyclic)."""
    ranks = {pipeline.initial_stage: 0}
    advance = [t for t in pipeline.transitions if t.kind == Kind.ADVANCE]
    for _ in range(len(pipeline.stages)):  # relax until stable: at most one pass per stage
        changed = False
        for edge in advance:
            if edge.source in ranks and ranks.get(edge.dest, -1) < ranks[edge.source] + 1:
                ranks[edge.dest] = ranks[edge.source] + 1
                changed = True
        if not changed:
            break
    return ranks


def layout(pipeline: Pipeline) -> dict[str, Point]:
    """The centre of every stage's box."""
    ranks = advance_ranks(pipeline)
    rows: dict[int, list[str]] = {}
    for stage in pipeline.stages:
        if stage.name in ranks:
            rows.setdefault(ranks[stage.name], []).append(stage.name)
    width = max((len(names) for names in rows.values()), default=1)
    places = {
        name: Point(MARGIN + NODE_W / 2 + col * COL_W, MARGIN + NODE_H / 2 + rank * ROW_H)
        for rank, names in rows.items()
        for col, name in enumerate(names)
    }
    side_x = MARGIN + NODE_W / 2 + (width - 1) * COL_W + SIDE_GAP
    return {**places, **_side_places(pipeline, places, side_x)}


def _side_places(pipeline: Pipeline, placed: Mapping[str, Point], x: float) -> dict[str, Point]:
    """Stages off the main flow: each at the mean height of the placed stages leading to it, no overlap."""
    wanted: list[tuple[float, str]] = []
    for stage in pipeline.stages:
        if stage.name in placed:
            continue
        sources = [
            placed[t.source].y for t in pipeline.transitions if t.dest == stage.name and t.source in placed
        ]
        wanted.append((sum(sources) / len(sources) if sources else math.inf, stage.name))
    places: dict[str, Point] = {}
    lowest = -math.inf
    for y, name in sorted(wanted):
        y = max(y if y != math.inf else lowest + ROW_H, lowest + ROW_H, MARGIN + NODE_H / 2)
        places[name] = Point(x, y)
        lowest = y
    return places


def _clip(centre: Point, towards: Point) -> Point:
    """Where the segment from ``centre`` to ``towards`` leaves the box around ``centre``."""
    dx, dy = towards.x - centre.x, towards.y - centre.y
    if dx == 0 and dy == 0:
        return centre
    t = min(NODE_W / 2 / abs(dx) if dx else math.inf, NODE_H / 2 / abs(dy) if dy else math.inf)
    return Point(centre.x + dx * t, centre.y + dy * t)


def stage_graph(pipeline: Pipeline, counts: Mapping[str, int], breaches: Mapping[str, int]) -> str:
    """The pipeline as an SVG document fragment: boxes with counts, arrows labelled with owners."""
    places = layout(pipeline)
    width = max(p.x for p in places.values()) + NODE_W / 2 + MARGIN
    height = max(p.y for p in places.values()) + NODE_H / 2 + MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="stage-graph" viewBox="0 0 {width:.0f} {height:.0f}"'
        f' width="{width:.0f}" role="img" aria-label="stage graph of {escape(pipeline.name)}">',
        *_markers(),
        *(_edge(edge, places) for edge in pipeline.transitions),
        *(_node(name, places[name], counts.get(name, 0), breaches.get(name, 0)) for name in places),
        # Owner labels last, over the boxes: an edge may pass under a stage it does not touch.
        *(_label(edge, places) for edge in pipeline.transitions),
        "</svg>",
    ]
    return "\n".join(parts)


def _markers() -> list[str]:
    return [
        "<defs>",
        *(
            f'<marker id="arrow-{kind}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
            f' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/>'
            "</marker>"
            for kind, colour in EDGE_COLOURS.items()
        ),
        "</defs>",
    ]


def _ends(edge: Transition, places: Mapping[str, Point]) -> tuple[Point, Point]:
    a, b = places[edge.source], places[edge.dest]
    return _clip(a, b), _clip(b, a)


def _edge(edge: Transition, places: Mapping[str, Point]) -> str:
    start, end = _ends(edge, places)
    colour = EDGE_COLOURS.get(edge.kind, "#4a5568")
    title = f"{edge.source} -> {edge.dest}: {edge.kind}, owned by {edge.owner}"
    return (
        f'<g class="edge edge-{edge.kind}" data-from="{escape(edge.source)}" data-to="{escape(edge.dest)}">'
        f"<title>{escape(title)}</title>"
        f'<line x1="{start.x:.1f}" y1="{start.y:.1f}" x2="{end.x:.1f}" y2="{end.y:.1f}" stroke="{colour}"'
        f' stroke-width="1.5" marker-end="url(#arrow-{edge.kind})"/></g>'
    )


def _label(edge: Transition, places: Mapping[str, Point]) -> str:
    start, end = _ends(edge, places)
    # A third of the way along, so the many edges into one stage do not stack their labels.
    x, y = start.x + (end.x - start.x) / 3, start.y + (end.y - start.y) / 3
    colour = EDGE_COLOURS.get(edge.kind, "#4a5568")
    return f'<text x="{x:.1f}" y="{y:.1f}" class="owner" fill="{colour}">{escape(edge.owner)}</text>'


def _node(name: str, at: Point, count: int, breaches: int) -> str:
    x, y = at.x - NODE_W / 2, at.y - NODE_H / 2
    late = f' <tspan class="late">{breaches} past SLA</tspan>' if breaches else ""
    return (
        f'<a href="bets?stage={escape(name)}"><g class="node" data-stage="{escape(name)}">'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
        f'<text x="{at.x:.1f}" y="{at.y - 5:.1f}" class="stage">{escape(name)}</text>'
        f'<text x="{at.x:.1f}" y="{at.y + 13:.1f}" class="count">'
        f'<tspan class="n">{count}</tspan> bet(s){late}</text></g></a>'
    )


# --- the schedule chart -------------------------------------------------------------------------

CHART_W, CHART_H, BAR_GAP = 720, 220, 2


def hours_chart(computed: Sequence[int], observed: Sequence[int], label: str) -> str:
    """Two bars per hour of the day (computed beside observed), scaled to the larger of both."""
    top = max([1, *computed, *observed])
    slot = (CHART_W - 2 * MARGIN) / 24
    bar = (slot - 3 * BAR_GAP) / 2
    base = CHART_H - MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="hours-chart" viewBox="0 0 {CHART_W} {CHART_H + 20}"'
        f' width="{CHART_W}" role="img" aria-label="{escape(label)}">',
        f'<line x1="{MARGIN}" y1="{base}" x2="{CHART_W - MARGIN}" y2="{base}" stroke="#718096"/>',
    ]
    for hour in range(24):
        x = MARGIN + hour * slot + BAR_GAP
        for i, (value, css) in enumerate(((computed[hour], "computed"), (observed[hour], "observed"))):
            h = (base - MARGIN) * value / top
            parts.append(
                f'<rect class="{css}" x="{x + i * (bar + BAR_GAP):.1f}" y="{base - h:.1f}" width="{bar:.1f}"'
                f' height="{h:.1f}"><title>{hour:02d}h {css}: {value}</title></rect>'
            )
        if hour % 3 == 0:
            parts.append(f'<text x="{x:.1f}" y="{base + 15}" class="tick">{hour:02d}h</text>')
    parts.append(f'<text x="{MARGIN}" y="{MARGIN - 5}" class="tick">max {top}</text></svg>')
    return "\n".join(parts)
