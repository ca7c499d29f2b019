"""The seed's pipeline: sourcing, six validation gates, landing page, paid ads, outcomes.

This is data, loaded through :func:`fleet.definitions.pipeline.validate_pipeline` like any
user-supplied pipeline. Each gate owns its advance edge and the kill edge from
its input stage; nothing else may move a bet out of that stage.
"""

from __future__ import annotations

from typing import Any

#: Sourcing scouts: the only agents that may create bets (in ``sourced``).
SCOUTS = [
    "reddit_scout",
    "search_trends_scout",
    "marketplace_scout",
    "app_review_scout",
    "forum_scout",
    "newsletter_scout",
]

#: (gate agent, input stage, output stage): the six validation gates, in order.
GATES = [
    ("source_validation_gate", "sourced", "source_validated"),
    ("category_economics_gate", "source_validated", "economics_checked"),
    ("competitors_analyzer", "economics_checked", "competitors_analyzed"),
    ("demand_signal_gate", "competitors_analyzed", "demand_validated"),
    ("offer_pricing_gate", "demand_validated", "offer_validated"),
    ("go_no_go_gate", "offer_validated", "lp_approved"),
]

_STAGES = [
    ("sourced", 12, "a scout wrote a raw idea"),
    ("source_validated", 12, "gate 1: the source is real and the pain is stated"),
    ("economics_checked", 12, "gate 2: the category can pay for acquisition"),
    ("competitors_analyzed", 12, "gate 3: competitors mapped, a gap exists"),
    ("demand_validated", 12, "gate 4: search and community demand measured"),
    ("offer_validated", 12, "gate 5: an offer and a price point are defined"),
    ("lp_approved", 24, "gate 6 (go/no-go): a landing-page build is approved"),
    ("lp_built", 24, "landing page built"),
    ("lp_live", 24, "landing page deployed and tracked"),
    ("ads_running", 72, "paid ads are sending traffic"),
    ("parked", 168, "on hold: a signal was ambiguous or the portfolio is full"),
]

_TERMINAL = [
    ("scaling", "the ads signal is strong: the bet graduates to scale"),
    ("killed", "the bet failed a gate or its signal"),
]


def _gate_edges() -> list[dict[str, Any]]:
    edges: list[dict[str, Any]] = []
    for agent, source, dest in GATES:
        edges.append({"from": source, "to": dest, "owner": agent, "kind": "advance"})
        edges.append({"from": source, "to": "killed", "owner": agent, "kind": "kill"})
    return edges


_LATER_EDGES = [
    ("offer_validated", "parked", "go_no_go_gate", "park"),
    ("lp_approved", "lp_built", "lp_builder", "advance"),
    ("lp_built", "lp_live", "lp_launcher", "advance"),
    ("lp_live", "ads_running", "ads_launcher", "advance"),
    ("ads_running", "scaling", "ads_signal_reader", "advance"),
    ("ads_running", "killed", "ads_signal_reader", "kill"),
    ("ads_running", "parked", "ads_signal_reader", "park"),
    ("parked", "lp_approved", "portfolio_reviewer", "revive"),
    ("parked", "killed", "portfolio_reviewer", "kill"),
]

PIPELINE: dict[str, Any] = {
    "name": "leanai-default",
    "noun": "bet",
    # `fleet seed` writes a raw idea, as a scout would.
    "seed_fields": {"idea": "seeded idea #{n}"},
    "initial_stage": "sourced",
    "creators": SCOUTS,
    "stages": [
        *({"name": n, "sla_hours": sla, "description": d} for n, sla, d in _STAGES),
        *({"name": n, "terminal": True, "description": d} for n, d in _TERMINAL),
    ],
    "transitions": [
        *_gate_edges(),
        *({"from": s, "to": d, "owner": o, "kind": k} for s, d, o, k in _LATER_EDGES),
    ],
}
