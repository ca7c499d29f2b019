"""The default fleet: 52 agent specs as data, one row per agent.

Pipeline agents own the transitions of :mod:`fleet.defaults.pipeline` (their
``polls`` and ``owns`` come from it). Every other agent works on live bets or on
board tasks and never moves a stage. The schedule follows the seed's stagger:
sourcing at 01/07/13/19 UTC, the validation gates 30 minutes later, build and
ads two hours after sourcing, and content, outreach, infrastructure and ops at
hours or minutes of their own (``python beat_schedule.py`` prints the load).
"""

from __future__ import annotations

from typing import Any

from fleet.defaults.pipeline import PIPELINE

#: The protocol version these specs were written for (see protocols/).
PROTOCOL_VERSION = "1.0"

QUEUES = ["sourcing", "validation", "build", "ads", "outreach", "content", "infra", "ops"]

#: group -> (UTC hours, base minute). Groups sharing hours start at different minutes;
#: ``fleet.app.schedule`` spreads each group's agents over the following minutes.
GROUP_SCHEDULE: dict[str, tuple[list[int], int]] = {
    "sourcing": ([1, 7, 13, 19], 0),
    "validation": ([1, 7, 13, 19], 30),
    "build": ([3, 9, 15, 21], 0),
    "ads": ([3, 9, 15, 21], 30),
    "content": ([4, 10, 16, 22], 0),
    "outreach": ([5, 11, 17, 23], 0),
    "infra": ([0, 6, 12, 18], 0),
    "ops": ([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22], 40),
}

# Handlers (import paths): simulated ones in fleet.defaults.sim, the real audit in fleet.ops.ceo.
SCOUT = "fleet.defaults.sim:scout"
GATE = "fleet.defaults.sim:gate"
ASSIST = "fleet.defaults.sim:assist"
OUTREACH = "fleet.defaults.sim:outreach"
DRAFT = "fleet.defaults.sim:draft"
CHECK = "fleet.defaults.sim:check"


def _owned(agent: str) -> list[list[str]]:
    return [[t["from"], t["to"]] for t in PIPELINE["transitions"] if t["owner"] == agent]


def _polled(agent: str) -> list[str]:
    return sorted({t["from"] for t in PIPELINE["transitions"] if t["owner"] == agent})


def spec(name: str, group: str, handler: str, role: str, **extra: Any) -> dict[str, Any]:
    """One agent row; pipeline agents get their polls and owned edges from the pipeline."""
    hours, minute = GROUP_SCHEDULE[group]
    return {
        "name": name,
        "role": role,
        "group": group,
        "queue": group,
        "schedule": {"hours": hours, "minute": minute},
        "polls": _polled(name),
        "owns": _owned(name),
        "protocol_version": PROTOCOL_VERSION,
        "handler": handler,
        **extra,
    }


def rows(group: str, handler: str, table: list[tuple[str, float, str]], **extra: Any) -> list[dict[str, Any]]:
    """Agent rows of one group sharing a handler: (name, expected seconds, role) each."""
    return [spec(name, group, handler, role, expected_seconds=secs, **extra) for name, secs, role in table]


_SOURCING = rows(
    "sourcing",
    SCOUT,
    creates=True,
    table=[
        ("reddit_scout", 240, "mines subreddits for stated, repeated pains"),
        ("search_trends_scout", 180, "finds rising search queries without a good answer"),
        ("marketplace_scout", 300, "reads marketplace listings for underserved niches"),
        ("app_review_scout", 240, "mines 1-3 star app reviews for unmet needs"),
        ("forum_scout", 240, "reads niche forums and communities for complaints"),
        ("newsletter_scout", 180, "scans industry newsletters for new markets"),
    ],
)

_VALIDATION = rows(
    "validation",
    GATE,
    [
        ("source_validation_gate", 180, "gate 1: the source is real and the pain is stated"),
        ("category_economics_gate", 150, "gate 2: the category can pay for acquisition"),
        ("competitors_analyzer", 180, "gate 3: maps competitors with parallel searches, finds the gap"),
        ("demand_signal_gate", 180, "gate 4: measures search and community demand"),
        ("offer_pricing_gate", 120, "gate 5: defines the offer and a price point"),
        ("go_no_go_gate", 120, "gate 6: approves, parks or kills a landing-page build"),
    ],
)

_BUILD = [
    spec(
        "lp_builder",
        "build",
        GATE,
        "builds the landing page of an approved bet",
        expected_seconds=600,
        time_limit=1200,
    ),
    *rows(
        "build",
        GATE,
        [
            ("lp_launcher", 240, "deploys the page on Vercel and installs tracking"),
        ],
    ),
    *rows(
        "build",
        ASSIST,
        [
            ("lp_copywriter", 300, "writes headline, copy and call to action for pages in build"),
            ("lp_designer", 300, "picks layout, palette and imagery for pages in build"),
            ("lp_qa_checker", 180, "checks links, forms and page speed before and after launch"),
            ("analytics_tagger", 120, "wires analytics events and conversion goals on new pages"),
            ("form_integrator", 120, "connects signup forms to the mailing list"),
        ],
    ),
]

_ADS = [
    *rows(
        "ads",
        GATE,
        [
            ("ads_launcher", 240, "launches Google Ads campaigns on a live page"),
            ("ads_signal_reader", 180, "reads the ads signal: scale, park or kill"),
            ("portfolio_reviewer", 120, "revives or kills parked bets as the portfolio allows"),
        ],
    ),
    *rows(
        "ads",
        ASSIST,
        [
            ("ad_creative_writer", 240, "writes ad headlines and descriptions for running campaigns"),
            ("keyword_planner", 180, "picks and prunes keywords of live campaigns"),
            ("audience_builder", 180, "builds targeting and negative audiences"),
            ("budget_pacer", 90, "paces daily spend against each bet's test budget"),
            ("ads_reporter", 120, "summarises clicks, cost and signups per bet"),
        ],
    ),
]

_OUTREACH = rows(
    "outreach",
    OUTREACH,
    [
        ("lead_finder", 240, "finds prospects for live bets in Apollo"),
        ("lead_enricher", 180, "enriches prospects with role and company data"),
        ("cold_email_writer", 240, "drafts personalised first-touch emails"),
        ("email_sender", 120, "sends approved sequences through Resend"),
        ("reply_triager", 120, "sorts replies into interested, objection and unsubscribe"),
        ("followup_scheduler", 90, "schedules follow-ups that got no reply"),
        ("partnership_scout", 180, "finds newsletters and creators to partner with"),
        ("community_outreach", 180, "answers relevant community threads for live bets"),
    ],
)

_CONTENT = rows(
    "content",
    DRAFT,
    [
        ("blog_writer", 420, "drafts long-form articles around live bets' keywords"),
        ("seo_optimizer", 240, "tunes titles, meta and internal links of drafts"),
        ("newsletter_writer", 300, "drafts the weekly studio newsletter"),
        ("social_poster", 180, "drafts short social posts for live bets"),
        ("case_study_writer", 360, "drafts write-ups of what live bets are learning"),
        ("video_scriptwriter", 300, "drafts short demo and explainer video scripts"),
        ("content_editor", 240, "edits drafts for tone, claims and style"),
        ("content_calendar_planner", 120, "plans what gets published when"),
    ],
)

_INFRA = rows(
    "infra",
    CHECK,
    [
        ("uptime_monitor", 60, "checks live pages and the services fleet depends on"),
        ("deploy_auditor", 120, "audits Vercel deployments and their build logs"),
        ("repo_maintainer", 180, "keeps GitHub repositories, branches and dependencies tidy"),
        ("dns_ssl_checker", 90, "checks domains, DNS records and certificate expiry"),
        ("email_deliverability_monitor", 120, "watches Resend bounces, complaints and reputation"),
        ("api_quota_monitor", 90, "watches Google Ads and Apollo quotas and rate limits"),
        ("backup_verifier", 180, "verifies that backups of the ledger and the board restore"),
    ],
)

_OPS = [
    spec(
        "ceo",
        "ops",
        "fleet.ops.ceo:ceo",
        "drift audit and stranded-bet detection; files board tasks",
        expected_seconds=120,
    ),
    spec(
        "ops_watchdog",
        "ops",
        "fleet.ops.ceo:watchdog",
        "repairs lagging bet projections in the ledger",
        expected_seconds=60,
    ),
]

CATALOGUE: dict[str, Any] = {
    "queues": QUEUES,
    "agents": [*_SOURCING, *_VALIDATION, *_BUILD, *_ADS, *_OUTREACH, *_CONTENT, *_INFRA, *_OPS],
}
