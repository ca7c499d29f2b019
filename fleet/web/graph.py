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
from dataclasses import dataclass, field
from html import escape

from fleet.definitions.pipeline import Kind, Pipeline, Transition

NODE_W, NODE_H = 190, 46
ROW_H, COL_W = 96, 250
MARGIN = 20
#: Distance between two parallel lanes, and an owner label's height and width per character
#: (10 px text, estimated generously so labels never touch).
LANE_GAP, LABEL_H, CHAR_W = 12, 12, 6.4
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


def label_width(text: str) -> float:
    return len(text) * CHAR_W + 8


@dataclass(frozen=True)
class Route:
    """One edge as drawn: its polyline, and where its owner label sits (left end, baseline)."""

    edge: Transition
    points: tuple[Point, ...]
    label_at: Point
    anchor: str  # "middle" (centred on label_at) or "start"
    labelled: bool = True  # False: another run from the same box already names the same owner


@dataclass
class Layout:
    """Where every stage box is, and how every edge runs between them.

    Edges between consecutive rows of the main flow are straight lines through the gap
    between the rows. Every other edge runs orthogonally: out of a side of its box, along a
    vertical lane of its own in a channel no box stands in, and into a side of the other
    box, so no edge crosses a stage it does not join and every label has a free row.
    """

    places: dict[str, Point]
    routes: list[Route]
    width: float
    height: float


def layout(pipeline: Pipeline) -> Layout:
    """Boxes in rows by advance rank with off-flow stages in a side column, and edge routes."""
    ranks = advance_ranks(pipeline)
    main = {s.name for s in pipeline.stages if s.name in ranks}
    edges = list(pipeline.transitions)
    straight = [e for e in edges if _adjacent(e, ranks)]
    routed = [e for e in edges if not _adjacent(e, ranks)]
    kinds = {e: _channel(e, main) for e in routed}
    lanes = {c: _lanes([e for e in routed if kinds[e] == c], c) for c in ("left", "mid", "right")}
    labels = {c: max((label_width(e.owner) for e in routed if kinds[e] == c), default=0.0) for c in lanes}
    left_w = _channel_width(labels["left"], lanes["left"])
    mid_w = max(_channel_width(labels["mid"], lanes["mid"]), COL_W - NODE_W)
    right_w = _channel_width(labels["right"], lanes["right"])
    rows: dict[int, list[str]] = {}
    for stage in pipeline.stages:
        if stage.name in main:
            rows.setdefault(ranks[stage.name], []).append(stage.name)
    x0 = MARGIN + left_w + NODE_W / 2
    places = {
        name: Point(x0 + col * COL_W, MARGIN + NODE_H / 2 + rank * ROW_H)
        for rank, names in rows.items()
        for col, name in enumerate(names)
    }
    main_right = max((p.x for p in places.values()), default=x0) + NODE_W / 2
    side_x = main_right + mid_w + NODE_W / 2
    places.update(_side_places(pipeline, places, side_x))
    has_side = len(places) > len(main)
    right_edge = (side_x + NODE_W / 2) if has_side else main_right
    geometry = _Geometry(places, main_right, side_x - NODE_W / 2, right_edge, x0 - NODE_W / 2, right_w)
    routes = [_straight(e, places) for e in straight]
    routes += [geometry.route(e, kinds[e], lanes[kinds[e]][_lane_key(e, kinds[e])]) for e in routed]
    width = right_edge + right_w + MARGIN
    height = max(p.y for p in places.values()) + NODE_H / 2 + MARGIN
    return Layout(places, sorted(routes, key=lambda r: edges.index(r.edge)), width, height)


def _adjacent(edge: Transition, ranks: Mapping[str, int]) -> bool:
    return edge.source in ranks and edge.dest in ranks and ranks[edge.dest] == ranks[edge.source] + 1


def _channel(edge: Transition, main: set[str]) -> str:
    """Which free channel an edge runs in: left of the main flow, between it and the side
    column, or right of the side column."""
    src, dst = edge.source in main, edge.dest in main
    if src and dst:
        return "left"
    return "mid" if src != dst else "right"


def _lane_key(edge: Transition, channel: str) -> str:
    # Edges into one side stage share its lane (a bus into it); the others own theirs.
    return f"in:{edge.dest}" if channel == "mid" and edge.dest else f"{edge.source}->{edge.dest}"


def _lanes(edges: Sequence[Transition], channel: str) -> dict[str, int]:
    keys: dict[str, int] = {}
    for edge in edges:
        keys.setdefault(_lane_key(edge, channel), len(keys))
    return keys


def _channel_width(label_w: float, lanes: Mapping[str, int]) -> float:
    return 0.0 if not lanes else label_w + 8 + len(lanes) * LANE_GAP + 8


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


@dataclass
class _Geometry:
    """Box positions and channel bounds, handing out ports (attachment heights) per box side."""

    places: Mapping[str, Point]
    main_right: float  # right edge of the main flow's boxes
    side_left: float  # left edge of the side column
    right_edge: float  # right edge of the rightmost box
    main_left: float  # left edge of the main flow's boxes
    right_w: float  # width of the channel right of the side column
    used: dict[tuple[str, str], int] = field(default_factory=dict)
    bus: dict[str, tuple[Point, ...]] = field(default_factory=dict)
    gap_labels: set[tuple[str, str]] = field(default_factory=set)

    def route(self, edge: Transition, channel: str, lane: int) -> Route:
        """The edge out of one box side, along its lane, into a side of the other box."""
        from_main = not self._in_side_column(edge.source)
        if channel == "mid":  # lanes beside the side column, labels beside the main flow
            lane_x = self.side_left - 14 - lane * LANE_GAP
            out_side, in_side = ("right", "left") if from_main else ("left", "right")
        elif channel == "left":  # lanes at the far left, labels beside the boxes
            lane_x = MARGIN + 6 + lane * LANE_GAP
            out_side = in_side = "left"
        else:  # right of the side column: lanes at the far right
            lane_x = self.right_edge + self.right_w - 14 - lane * LANE_GAP
            out_side = in_side = "right"
        leave = self._leave(edge.source, out_side)
        if channel == "mid" and from_main:  # edges into one side stage share its entry (a bus)
            enter = self.bus.setdefault(edge.dest, self._enter(edge.dest, in_side))
        else:
            enter = self._enter(edge.dest, in_side)
        start, end = leave[-1], enter[0]
        points = (*leave, Point(lane_x, start.y), Point(lane_x, end.y), *enter)
        near, near_side = (start, out_side) if from_main else (end, in_side)
        width = len(edge.owner) * CHAR_W
        if len(enter) == 2 and not from_main:  # into the gap above a row: label by the lane, clear of it
            x = lane_x - 4 - width if in_side == "right" else lane_x + 4
            return Route(edge, points, Point(x, end.y - 3), "start")
        if len(leave) == 2:  # runs from one box along the gap below it: one label per owner
            first = (edge.source, edge.owner) not in self.gap_labels
            self.gap_labels.add((edge.source, edge.owner))
            return Route(edge, points, Point(leave[0].x + 4, start.y - 3), "start", labelled=first)
        if near_side == "right":
            return Route(edge, points, Point(near.x + 4, near.y - 3), "start")
        return Route(edge, points, Point(near.x - 4 - width, near.y - 3), "start")

    def _in_side_column(self, name: str) -> bool:
        return self.places[name].x - NODE_W / 2 >= self.side_left - 0.5

    def _blocked(self, name: str, side: str) -> bool:
        """Whether another box of the same column group stands in the row on that side of ``name``
        (the channel between the main flow and the side column is always free)."""
        at, group = self.places[name], self._in_side_column(name)
        return any(
            other != name
            and self._in_side_column(other) == group
            and p.y == at.y
            and ((p.x > at.x) if side == "right" else (p.x < at.x))
            for other, p in self.places.items()
        )

    def _leave(self, name: str, side: str) -> tuple[Point, ...]:
        """Out of a box side; when a neighbour stands there, down into the gap below the row."""
        if not self._blocked(name, side):
            return (self._port(name, side),)
        bottom = self._edge_port(name, side, NODE_H / 2)
        return bottom, Point(bottom.x, bottom.y + (ROW_H - NODE_H) * 0.75)

    def _enter(self, name: str, side: str) -> tuple[Point, ...]:
        """Into a box side; when a neighbour stands there, from the gap above the row."""
        if not self._blocked(name, side):
            return (self._port(name, side),)
        top = self._edge_port(name, side, -NODE_H / 2)
        return Point(top.x, top.y - (ROW_H - NODE_H) * 0.5), top

    def _edge_port(self, name: str, side: str, dy: float) -> Point:
        """The next attachment point along the bottom (``dy`` > 0) or top of a box, near ``side``."""
        at = self.places[name]
        n = self.used.get((name, f"{side}{dy:+}"), 0)
        self.used[(name, f"{side}{dy:+}")] = n + 1
        dx = NODE_W / 2 - 10 - n * 10
        return Point(at.x + dx if side == "right" else at.x - dx, at.y + dy)

    def _port(self, name: str, side: str) -> Point:
        """The next free attachment point on one side of a box, spread over its height."""
        at = self.places[name]
        n = self.used.get((name, side), 0)
        self.used[(name, side)] = n + 1
        dy = -NODE_H / 2 + LABEL_H + 2 + min(n, 2) * (LABEL_H + 2)
        return Point(at.x + NODE_W / 2 if side == "right" else at.x - NODE_W / 2, at.y + dy)


def _clip(centre: Point, towards: Point) -> Point:
    """Where the segment from ``centre`` to ``towards`` leaves the box around ``centre``."""
    dx, dy = towards.x - centre.x, towards.y - centre.y
    if dx == 0 and dy == 0:
        return centre
    t = min(NODE_W / 2 / abs(dx) if dx else math.inf, NODE_H / 2 / abs(dy) if dy else math.inf)
    return Point(centre.x + dx * t, centre.y + dy * t)


def _straight(edge: Transition, places: Mapping[str, Point]) -> Route:
    a, b = places[edge.source], places[edge.dest]
    start, end = _clip(a, b), _clip(b, a)
    # A third of the way along, so the many edges into one stage do not stack their labels.
    mid = Point(start.x + (end.x - start.x) / 3, start.y + (end.y - start.y) / 3 + 4)
    return Route(edge, (start, end), mid, "middle")


def stage_graph(pipeline: Pipeline, counts: Mapping[str, int], breaches: Mapping[str, int]) -> str:
    """The pipeline as an SVG document fragment: boxes with counts, arrows labelled with owners."""
    drawn = layout(pipeline)
    width, height = drawn.width, drawn.height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="stage-graph" viewBox="0 0 {width:.0f} {height:.0f}"'
        f' width="{width:.0f}" role="img" aria-label="stage graph of {escape(pipeline.name)}">',
        *_markers(),
        *(_edge(route) for route in drawn.routes),
        *(_node(name, at, counts.get(name, 0), breaches.get(name, 0)) for name, at in drawn.places.items()),
        *(_label(route) for route in drawn.routes if route.labelled),
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


def _edge(route: Route) -> str:
    edge = route.edge
    colour = EDGE_COLOURS.get(edge.kind, "#4a5568")
    title = f"{edge.source} -> {edge.dest}: {edge.kind}, owned by {edge.owner}"
    points = " ".join(f"{p.x:.1f},{p.y:.1f}" for p in route.points)
    return (
        f'<g class="edge edge-{edge.kind}" data-from="{escape(edge.source)}" data-to="{escape(edge.dest)}">'
        f"<title>{escape(title)}</title>"
        f'<polyline points="{points}" fill="none" stroke="{colour}"'
        f' stroke-width="1.5" marker-end="url(#arrow-{edge.kind})"/></g>'
    )


def _label(route: Route) -> str:
    colour = EDGE_COLOURS.get(route.edge.kind, "#4a5568")
    at = route.label_at
    return (
        f'<text x="{at.x:.1f}" y="{at.y:.1f}" class="owner {route.anchor}"'
        f' fill="{colour}">{escape(route.edge.owner)}</text>'
    )


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
