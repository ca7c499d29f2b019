"""Names that several modules must agree on: collections, indexes, Redis keys, versions.

Nothing else in fleet spells a collection name or a Redis key as a string literal.
"""

from __future__ import annotations

from typing import Final

# --- MongoDB collections ----------------------------------------------------------
#: Current state of each live bet: a projection of its transition records (a cache). Only bets
#: at a non-terminal stage live here, so what hot paths read is the live work, not history.
BETS: Final = "bets"
#: Projections of finished bets (at a terminal stage): the same documents, moved out of BETS.
BETS_DONE: Final = "bets_done"
#: Small documents fleet keeps about its own store (the schema version, the last clean verify).
META: Final = "fleet_meta"
#: Append-only record of every accepted transition; ``_id = "<bet>:<seq>"`` is the commit point.
TRANSITIONS: Final = "transitions"
#: Every refused transition attempt, with its reason.
REFUSALS: Final = "refusals"
#: One document per heartbeat: agent, type, actions, protocol version and hash.
HEARTBEATS: Final = "heartbeats"
#: One document per fanned-out bet task (a *part* of its heartbeat, ``parent`` = the heartbeat
#: id): apart from heartbeats, so no heartbeat count, duration or concurrency includes them.
HEARTBEAT_PARTS: Final = "heartbeat_parts"
#: Advisory leases on bets; ``_id = "<bet>:<seq>:<n>"`` so taking one over is an insert.
CLAIMS: Final = "claims"
#: One document per failed attempt on a bet (a failed external call), never updated.
FAILURES: Final = "bet_failures"
#: The task board and each task's history.
TASKS: Final = "tasks"
TASK_EVENTS: Final = "task_events"
#: Usage an agent reported (tokens in/out, cost) per call, for budgets and spend per day.
USAGE: Final = "usage"
#: Bets an agent is no longer offered after refusing too often; ``_id = "<agent>:<bet>:<seq>"``.
HOLDS: Final = "holds"
#: MCP calls refused for a token that did not verify: per-call documents (rate-limited per
#: source) and per-hour counts per claimed name and source (see fleet.mcp.rejections).
REJECTED_TOKENS: Final = "rejected_tokens"
#: End-to-end probes: a worker writes one when it runs `fleet.probe` (doctor, smoke test).
PROBES: Final = "probes"
#: One document per (beat entry, slot) a beat sent, ``_id = "<entry>@<slot ms>"``: the insert is
#: the once-per-slot check, so it holds across takeovers and a Redis that lost its keys.
BEAT_SLOTS: Final = "beat_slots"

#: Every collection fleet owns (indexes are created for each, even those without one).
COLLECTIONS: Final = (
    BETS,
    BETS_DONE,
    META,
    TRANSITIONS,
    REFUSALS,
    HEARTBEATS,
    HEARTBEAT_PARTS,
    CLAIMS,
    FAILURES,
    TASKS,
    TASK_EVENTS,
    PROBES,
    BEAT_SLOTS,
    HOLDS,
    USAGE,
    REJECTED_TOKENS,
)

#: Index definitions per collection: (name, [(field, direction)], unique).
#: Only plain ascending indexes: FerretDB v1 has no TTL and ignores ``sparse``. On FerretDB
#: only ``_id`` lookups use an index (see fleet.store.indexes); these serve real MongoDB.
INDEXES: Final[dict[str, list[tuple[str, list[tuple[str, int]], bool]]]] = {
    # Candidates: bets at a stage, least recently attempted first.
    BETS: [("stage_attempted", [("stage", 1), ("attempted_at", 1), ("_id", 1)], False)],
    TRANSITIONS: [
        ("bet_seq", [("bet_id", 1), ("seq", 1)], True),
        ("at", [("at", 1)], False),
    ],
    REFUSALS: [("bet_at", [("bet_id", 1), ("at", 1)], False), ("agent_at", [("agent", 1), ("at", 1)], False)],
    # Finished bets, newest first (``fleet bets --stage killed``).
    BETS_DONE: [("stage_updated", [("stage", 1), ("updated_at", -1)], False)],
    HEARTBEATS: [
        ("agent_started", [("agent", 1), ("started_at", 1)], False),
        ("started", [("started_at", 1)], False),  # the windows: handoffs, drift, peak
    ],
    HEARTBEAT_PARTS: [("parent", [("parent", 1)], False), ("started", [("started_at", 1)], False)],
    CLAIMS: [("bet_seq", [("bet_id", 1), ("seq", 1)], False), ("claimed_at", [("claimed_at", 1)], False)],
    FAILURES: [("bet_seq", [("bet_id", 1), ("seq", 1)], False)],
    TASKS: [
        ("assignee_status", [("assignee", 1), ("status", 1)], False),
        ("dedupe_generation", [("dedupe_key", 1), ("generation", 1)], False),
    ],
    USAGE: [("agent_at", [("agent", 1), ("at", 1)], False)],
    TASK_EVENTS: [
        ("task_at", [("task_id", 1), ("at", 1)], False),
        ("task_seq", [("task_id", 1), ("seq", 1)], False),
    ],
    HOLDS: [("agent_bet", [("agent", 1), ("bet_id", 1)], False)],
    REJECTED_TOKENS: [("at", [("at", 1)], False)],
}

#: Default and largest retention window (days) for what :mod:`fleet.ops.retention` prunes.
RETENTION_DAYS: Final = 14.0
MAX_RETENTION_DAYS: Final = 3650.0
#: The watchdog repairs the live projections every run and everything this often (h): a
#: creation whose writer died before projecting it is not live anywhere a cheap read sees.
FULL_REPAIR_EVERY_H: Final = 6.0
#: ``META`` document ids: when the last full repair and the last clean verify ran.
META_FULL_REPAIR: Final = "full-repair"
META_CLEAN_VERIFY: Final = "clean-verify"

#: Collections pruned by age alone, and their time field: TTL indexes on MongoDB.
TTL_FIELDS: Final = {
    HEARTBEATS: "started_at",
    HEARTBEAT_PARTS: "started_at",
    REFUSALS: "at",
    PROBES: "at",
    BEAT_SLOTS: "at",
    USAGE: "at",
    REJECTED_TOKENS: "at",
}

#: The expression FerretDB v1.24's SQLite backend filters ``_id`` with, and the suffix of the
#: index fleet adds on it (see fleet.store.indexes).
SQLITE_ID_EXPRESSION: Final = "_ferretdb_sjson->'$._id'"
SQLITE_ID_INDEX: Final = "_fleet_id"

# --- Redis keys -------------------------------------------------------------------
#: The running counts of one database's ledger (fleet.ledger.tally): ``<this>:<name>`` keys.
TALLY_KEY: Final = "fleet:tally:{db}"
#: Held while one process rebuilds those counts from the ledger.
TALLY_LOCK_KEY: Final = "fleet:tally-rebuild:{db}"
#: One heartbeat per agent at a time across all workers.
AGENT_LOCK_KEY: Final = "fleet:lock:agent:{agent}"
#: The agent lock's lease (s): a SIGKILLed holder blocks its agent this long at most.
AGENT_LOCK_TTL_S: Final = 30.0
#: The live holder renews its lease this many times per lease (every 10 s by default), so
#: two renewals in a row may fail (a Redis blip) before the lease lapses.
AGENT_LOCK_RENEWALS_PER_TTL: Final = 3
#: Held by the one active beat (fleet.app.beat); a standby beat ticks only once it takes it.
BEAT_LOCK_KEY: Final = "fleet:beat:lock"
#: Set when a beat sends an entry for one slot (epoch ms): the once-per-slot check while the
#: store (BEAT_SLOTS, the first check) cannot be reached.
BEAT_SENT_KEY: Final = "fleet:beat:sent:{entry}:{slot}"
#: The latest slot (epoch ms) sent of each entry: slots between it and the next send were missed.
BEAT_LAST_KEY: Final = "fleet:beat:last:{entry}"
#: Bet tasks of one agent dispatched and not finished, fleet-wide: member task id -> expiry (epoch s).
FANOUT_RUNNING_KEY: Final = "fleet:fanout:{agent}"
#: Heartbeats running or woken and not started yet, fleet-wide: a sorted set, member -> expiry (epoch s).
RUNNING_HEARTBEATS_KEY: Final = "fleet:heartbeats:running"
#: Present while an agent was woken less than the minimum gap ago (coalesces a burst of arrivals).
WAKE_GAP_KEY: Final = "fleet:wake:gap:{agent}"
#: Agents a full cap turned away: woken when a heartbeat ends and frees a slot.
WAKE_WAITING_KEY: Final = "fleet:wake:waiting"
#: Set when a bet arrived while the agent was running: it is woken again when that heartbeat ends.
WAKE_AGAIN_KEY: Final = "fleet:wake:again:{agent}"

#: Spend reservations of one agent on one UTC day (fleet.agents.budget): member -> expiry (epoch s),
#: member -> reserved US dollars, and a counter bumped by every release.
BUDGET_HELD_KEY: Final = "fleet:budget:{agent}:{day}:held"
BUDGET_AMOUNTS_KEY: Final = "fleet:budget:{agent}:{day}:amounts"
BUDGET_GENERATION_KEY: Final = "fleet:budget:{agent}:{day}:generation"

# --- Celery -----------------------------------------------------------------------
HEARTBEAT_TASK: Final = "fleet.heartbeat"
#: "wake": sent by fleet.runtime.wake when a bet arrives at a stage the agent polls.
HEARTBEAT_REASONS: Final = ("scheduled", "adhoc", "wake")
#: One bet of a fanned-out heartbeat (fleet.runtime.fanout), on its agent's queue.
BET_TASK: Final = "fleet.bet"
#: The ``reason`` on a bet task's part record (it is not a heartbeat of its own).
BET_PART_REASON: Final = "bet"
PROBE_TASK: Final = "fleet.probe"
#: Seconds between an agent's soft time limit (the heartbeat stops its bet threads, records
#: and releases) and its hard limit (``time_limit``: Celery kills the process); capped at a
#: fifth of the limit for very short ones.
STOP_GRACE_S: Final = 15.0
#: Queue of every task that is not a heartbeat (probes), and of heartbeats for unknown agents.
OPS_QUEUE: Final = "ops"

# --- operators -------------------------------------------------------------------
#: Who an operator's actions are recorded as (board closes, filed audit tasks, seeded items).
OPERATOR: Final = "operator"

# --- local services ---------------------------------------------------------------
FERRETDB_MODULE: Final = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION: Final = "v1.24.2"

#: Largest protocols file fleet reads (checked before parsing; a real one is a few KiB, and the
#: cap keeps a mistaken file from costing every heartbeat seconds). FLEET_PROTOCOLS_MAX_BYTES overrides it.
MAX_PROTOCOLS_BYTES: Final = 1024 * 1024

#: Who answers for an agent spec that names no ``owner``: a person, not an agent.
DEFAULT_SPEC_OWNER: Final = "operator"

# --- limits on operator input -------------------------------------------------------
#: Most bets one ``fleet seed`` creates: a typo (``fleet seed 1000000000``) must not run for hours.
MAX_SEED_BETS: Final = 10_000

#: Handler modules that moved when ``fleet/`` was laid out by layer: a catalogue naming the
#: old module (``"fleet.sim:scout"``) still resolves.
MOVED_HANDLER_MODULES: Final = {"fleet.sim": "fleet.defaults.sim", "fleet.ceo": "fleet.ops.ceo"}
