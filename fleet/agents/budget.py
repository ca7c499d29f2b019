"""Spend reservations: an agent's daily cap holds fleet-wide, across batches, fan-out and heartbeats.

Before a bet (or the one run of an agent that polls nothing) starts, its expected cost is
reserved against what is left of the agent's cap today, in one Lua script every worker
shares: ``recorded spend + open reservations + estimate <= cap``, else the bet is not
started. The recorded spend is the store's usage documents (the one truth, so nothing is
rebuilt when Redis loses its keys); Redis holds only the open reservations. When the bet
ends its reports are in the store, and its reservation is released.

- **Estimate**: the protocols' ``budgets.per_bet_usd`` for the agent, else the mean of its
  last :data:`RECENT_REPORTS` usage reports; an agent that never reported reserves all
  that is left (its first bet runs alone).
- **Race**: the spend is read before the script runs, and a bet that settles in between
  would be in neither figure. Every release bumps a generation counter in the same script;
  a reservation passes the generation it read before the spend, and is retried when it moved.
- **A dead worker's reservation** expires after its bet's time limit plus a margin.
- **Worst case**: the cap is exceeded by at most what the bets running at once report above
  their estimates (none when estimates hold); a Redis that lost its keys also forgets the
  estimates of the bets then in flight.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

import redis
from pymongo.database import Database

from fleet.agents import usage
from fleet.constants import BUDGET_AMOUNTS_KEY, BUDGET_GENERATION_KEY, BUDGET_HELD_KEY
from fleet.definitions.protocols import LoadedProtocols
from fleet.errors import BrokerUnavailable, OverBudget
from fleet.store import Document, clock

#: An agent's estimate, when the protocols set none, is the mean of this many of its last reports.
RECENT_REPORTS = 20
#: A reservation outlives its bet's time limit by this much (then a dead worker's lapses).
RESERVATION_MARGIN_S = 60.0
#: Reservation attempts when concurrent releases keep moving the generation.
ATTEMPTS = 20
#: Keys of a day are kept this long (they are empty once the day's bets are over).
DAY_KEYS_TTL_S = 2 * 86400
#: Estimate sent to the script meaning "all that is left".
ALL_LEFT = -1.0

# KEYS: held (zset member -> expiry), amounts (hash member -> usd), generation.
# ARGV: now, member, amount (ALL_LEFT: what is left), expiry, cap, spent, generation seen, keys ttl.
# Returns {status, amount reserved, held by others}: 1 reserved, 0 refused, -1 generation moved.
_RESERVE = """
local gen = tonumber(redis.call('GET', KEYS[3]) or '0')
if gen ~= tonumber(ARGV[7]) then return {-1, '0', '0'} end
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('HDEL', KEYS[2], m)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local held = 0
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do held = held + tonumber(v) end
local cap, spent, amount = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[3])
local left = cap - spent - held
if amount < 0 then amount = left end
if left <= 1e-9 or amount > left + 1e-9 then return {0, tostring(amount), tostring(held)} end
redis.call('HSET', KEYS[2], ARGV[2], tostring(amount))
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[8]) end
return {1, tostring(amount), tostring(held)}
"""

# KEYS as above; ARGV: member, keys ttl. The release and the generation bump are one step.
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Reservation:
    """Dollars held against an agent's cap today for one bet (or run) until :meth:`release`."""

    client: redis.Redis
    keys: tuple[str, str, str]
    member: str
    amount_usd: float
    #: The estimate the reservation was made for (None: the agent has no history, all left was held).
    estimate_usd: float | None

    def release(self) -> None:
        """The bet is over (its reports are in the store): its hold no longer counts."""
        # Unreleased, the hold lapses at its expiry: the cap is stricter meanwhile, never looser.
        with suppress(redis.RedisError):
            self.client.register_script(_RELEASE)(keys=list(self.keys), args=[self.member, DAY_KEYS_TTL_S])


def estimate(db: Database[Document], loaded: LoadedProtocols, agent: str) -> float | None:
    """What one bet of ``agent`` is expected to cost: the protocols' figure, else its recent mean."""
    fixed = loaded.protocols.budgets.per_bet_usd.get(agent)
    return fixed if fixed is not None else usage.mean_cost(db, agent, RECENT_REPORTS)


def reserve(
    client: redis.Redis,
    db: Database[Document],
    loaded: LoadedProtocols,
    agent: str,
    member: str,
    ttl_s: float,
) -> Reservation | None:
    """Hold the expected cost of one bet of ``agent`` against its cap; None when it has no cap.

    Raises :class:`OverBudget` when what is left today does not cover it, and
    :class:`BrokerUnavailable` when Redis does not answer (a capped agent is never run unchecked).
    """
    cap = loaded.protocols.budgets.daily_usd.get(agent)
    if cap is None:
        return None
    expected = estimate(db, loaded, agent)
    now = clock(db).now()
    keys = _keys(agent, now)
    script = client.register_script(_RESERVE)
    try:
        for _ in range(ATTEMPTS):
            seen = int(client.get(keys[2]) or 0)
            spent = usage.spend(db, agent, usage.day_start(now)).get(agent, 0.0)
            wall = now.timestamp()
            amount = ALL_LEFT if expected is None else expected
            expiry = wall + ttl_s + RESERVATION_MARGIN_S
            args: list[str | float] = [wall, member, amount, expiry, cap, spent, seen, DAY_KEYS_TTL_S]
            status, held_usd, others = script(keys=list(keys), args=args)
            if int(status) == 1:
                return Reservation(client, keys, member, float(held_usd), expected)
            if int(status) == 0:
                raise OverBudget(_refusal(cap, spent, float(others), expected))
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"budget reservation for {agent}: {exc}") from exc
    raise OverBudget(f"over budget: {ATTEMPTS} reservations of {agent} raced other bets; left for later")


def _keys(agent: str, now: datetime) -> tuple[str, str, str]:
    day = usage.day_start(now).date().isoformat()
    return (
        BUDGET_HELD_KEY.format(agent=agent, day=day),
        BUDGET_AMOUNTS_KEY.format(agent=agent, day=day),
        BUDGET_GENERATION_KEY.format(agent=agent, day=day),
    )


def _refusal(cap: float, spent: float, held: float, expected: float | None) -> str:
    wanted = "what is left" if expected is None else f"${expected:.2f} expected"
    return (
        f"over budget: spent ${spent:.2f} and ${held:.2f} reserved by bets in flight of ${cap:.2f} today;"
        f" {wanted} does not fit (protocols budgets.daily_usd)"
    )
