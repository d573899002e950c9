"""Buckets in Redis, shared by every gateway replica.

Every decision is one Lua script: it reads the server's clock (`TIME`, so the
replicas' clocks never matter for rates), refills and checks every bucket of
the request and every spend budget (`modelyard.ratelimit.spend`), and takes
from all of them or from none. A settlement (refunds, and the cost beyond a
reservation) is a second script.
Both run by EVALSHA and are loaded again when the server answers NOSCRIPT (after
a restart or `SCRIPT FLUSH`).

When Redis cannot be reached within `timeout_s`, the failure policy decides:
"fail_open" answers from per-replica local buckets of the same size (each
replica then admits up to the full limit on its own), "fail_closed" refuses with
UNAVAILABLE. Either way a decision never waits longer than `timeout_s`; Redis is
tried again every `retry_interval_s`, and an outage is logged once when it
begins and once when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Demand, Shortfall
from modelyard.ratelimit.spend import Charge, Crossing, Overspend, crossings
from modelyard.ratelimit.store import Outcome
from modelyard_client.errors import InvalidRequest, RateLimiterUnavailable

log = logging.getLogger(__name__)

FailurePolicy = Literal["fail_open", "fail_closed"]
FAILURE_POLICIES: tuple[FailurePolicy, ...] = ("fail_open", "fail_closed")

# The hash tag keeps every bucket in one cluster slot, as a multi-key script needs.
DEFAULT_KEY_PREFIX = "modelyard:{ratelimit}:"

# A request's whole decision, buckets and spend counters together, is one script
# (`_RESERVE`); its settlement another (`_SETTLE`). KEYS are the buckets (ARGV[1]
# of them), then the spend counters. ARGV then holds (capacity, refill per
# second, amount) per bucket, then (budget, amount, seconds to keep, n, n alert
# fractions) per counter; amounts of money are integers of nano-dollars.
#
# A bucket is a hash of its level, when that level was measured and the capacity
# it was built with: a missing bucket, or one built with another capacity
# (limits changed), is full. It expires once it would have refilled, which
# leaves it full as well. A counter is a hash of what is spent and held
# ('spent') and how many alert fractions were reported ('alerted'); it expires
# a day after its window resets, on the limiter's clock (`SpendBudget.keep_s`, a
# time to live: Redis's own clock has no say in when a window ends).
_CROSSINGS = """
local function crossings(key, spent, budget, a, j, found)
  local told = tonumber(redis.call('HGET', key, 'alerted') or '0')
  local reached = 0
  for f = 1, tonumber(ARGV[a + 3]) do
    if spent >= tonumber(ARGV[a + 3 + f]) * budget then reached = f end
  end
  if reached > told then
    redis.call('HSET', key, 'alerted', reached)
    found[#found + 1] = {j, told, reached, string.format('%.0f', spent)}
  end
end
"""

# Replies {1, {}, {}, crossings} when admitted, else {0, refused buckets, refused
# counters, {}}: a refused bucket as i, wait_s (-1: never); a refused counter as
# j, spent (1-based within its kind); a crossing as {j, told before, reached, spent}.
_RESERVE = (
    _CROSSINGS
    + """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nb = tonumber(ARGV[1])
local levels = {}
local short = {}
for i = 1, nb do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local amount = tonumber(ARGV[3 * i + 1])
  local state = redis.call('HMGET', KEYS[i], 'level', 'at', 'cap')
  local level = cap
  if state[1] and tonumber(state[3]) == cap then
    level = tonumber(state[1])
    local at = tonumber(state[2])
    if now > at then level = math.min(cap, level + (now - at) * rate) end
  end
  levels[i] = level
  if level < amount then
    local wait = -1
    if amount <= cap and rate > 0 then wait = (amount - level) / rate end
    short[#short + 1] = i
    short[#short + 1] = string.format('%.6f', wait)
  end
end
local over = {}
local starts = {}
local a = 3 * nb + 2
for j = nb + 1, #KEYS do
  local spent = tonumber(redis.call('HGET', KEYS[j], 'spent') or '0')
  if spent + tonumber(ARGV[a + 1]) > tonumber(ARGV[a]) then
    over[#over + 1] = j - nb
    over[#over + 1] = string.format('%.0f', spent)
  end
  starts[j] = a
  a = a + 4 + tonumber(ARGV[a + 3])
end
if #short > 0 or #over > 0 then return {0, short, over, {}} end
for i = 1, nb do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local left = levels[i] - tonumber(ARGV[3 * i + 1])
  redis.call('HSET', KEYS[i], 'level', string.format('%.17g', left),
    'at', string.format('%.17g', now), 'cap', ARGV[3 * i - 1])
  redis.call('PEXPIRE', KEYS[i], math.ceil((cap - left) / rate * 1000) + 1000)
end
local found = {}
for j = nb + 1, #KEYS do
  local s = starts[j]
  local spent = redis.call('HINCRBY', KEYS[j], 'spent', ARGV[s + 1])
  redis.call('EXPIRE', KEYS[j], ARGV[s + 2])
  crossings(KEYS[j], spent, tonumber(ARGV[s]), s, j - nb, found)
end
return {1, {}, {}, found}
"""
)

# Replies the crossings, as `_RESERVE` does. A refund to a counter that is gone
# (its window long over) is dropped, and a counter never goes below 0.
_SETTLE = (
    _CROSSINGS
    + """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nb = tonumber(ARGV[1])
for i = 1, nb do
  local cap = tonumber(ARGV[3 * i - 1])
  local rate = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', KEYS[i], 'level', 'at', 'cap')
  -- A missing or rebuilt bucket is already full: nothing to give back to.
  if state[1] and tonumber(state[3]) == cap then
    local level = tonumber(state[1])
    local at = tonumber(state[2])
    if now > at then
      level = level + (now - at) * rate
      at = now
    end
    level = math.min(cap, level + tonumber(ARGV[3 * i + 1]))
    redis.call('HSET', KEYS[i], 'level', string.format('%.17g', level),
      'at', string.format('%.17g', at))
    redis.call('PEXPIRE', KEYS[i], math.ceil((cap - level) / rate * 1000) + 1000)
  end
end
local found = {}
local a = 3 * nb + 2
for j = nb + 1, #KEYS do
  local delta = tonumber(ARGV[a + 1])
  if delta > 0 or redis.call('EXISTS', KEYS[j]) == 1 then
    local spent = redis.call('HINCRBY', KEYS[j], 'spent', ARGV[a + 1])
    if spent < 0 then
      redis.call('HSET', KEYS[j], 'spent', 0)
      spent = 0
    end
    redis.call('EXPIRE', KEYS[j], ARGV[a + 2])
    if delta > 0 then crossings(KEYS[j], spent, tonumber(ARGV[a]), a, j - nb, found) end
  end
  a = a + 4 + tonumber(ARGV[a + 3])
end
return found
"""
)

# What "Redis cannot be reached" looks like; anything else (a script bug) is raised.
_OUTAGE = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica during failover
    TimeoutError,
    OSError,
)


def redacted(url: str) -> str:
    """The URL without credentials, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisBucketStore:
    """Buckets in Redis; see the module docstring for the failure policy."""

    def __init__(
        self,
        url: str,
        *,
        policy: FailurePolicy = "fail_open",
        timeout_s: float = 0.25,
        retry_interval_s: float = 1.0,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        max_connections: int = 64,
    ) -> None:
        if policy not in FAILURE_POLICIES:
            raise InvalidRequest(
                f"policy must be one of {', '.join(FAILURE_POLICIES)}, got {policy!r}"
            )
        self.url = redacted(url)
        self.policy = policy
        self.timeout_s = timeout_s
        self.retry_interval_s = retry_interval_s
        self.key_prefix = key_prefix
        self.fallback = LocalBucketStore()
        # No retry loops or backoff inside the client: the decision has one deadline.
        # One immediate retry lets a pooled connection that died with a Redis
        # restart be replaced without counting as an outage.
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,  # waiting for a connection counts against the decision's deadline
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._client = aioredis.Redis(connection_pool=self._pool)
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._down_since: float | None = None  # monotonic; None while Redis answers
        self._next_attempt = 0.0

    @property
    def reachable(self) -> bool:
        """False from a failed call until a call succeeds again."""
        return self._down_since is None

    async def take(self, demands: Sequence[Demand]) -> Outcome:
        return await self.reserve(demands, ())

    async def reserve(self, demands: Sequence[Demand], charges: Sequence[Charge]) -> Outcome:
        if not demands and not charges:
            return Outcome((), self)
        if self._down_since is None or time.monotonic() >= self._next_attempt:
            try:
                reply = await self._run(self._reserve, demands, charges)
            except _OUTAGE as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return self._outcome(demands, charges, reply)
        if self.policy == "fail_closed":
            raise RateLimiterUnavailable(
                f"the rate-limit store (Redis at {self.url}) is unreachable; requests are "
                "refused until it answers again (failure policy fail_closed)"
            )
        return await self.fallback.reserve(demands, charges)

    async def give_back(self, demands: Sequence[Demand]) -> None:
        await self.settle(demands, ())

    async def settle(
        self, demands: Sequence[Demand], charges: Sequence[Charge]
    ) -> tuple[Crossing, ...]:
        if (not demands and not charges) or self._down_since is not None:
            return ()  # a lost refund only makes the limit stricter for a while
        try:
            reply = await self._run(self._settle, demands, charges)
        except _OUTAGE as exc:
            self._went_down(exc)
            return ()
        return self._crossings(charges, reply)

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()

    async def _run(self, script: Any, demands: Sequence[Demand], charges: Sequence[Charge]) -> Any:
        keys = [self.key_prefix + d.bucket.key for d in demands]
        keys += [self.key_prefix + c.budget.key for c in charges]
        args: list[str] = [str(len(demands))]
        for d in demands:
            args += [repr(d.bucket.capacity), repr(d.bucket.refill_per_second), repr(d.amount)]
        for c in charges:
            b = c.budget
            args += [str(b.budget_nano), str(c.nano), str(b.keep_s), str(len(b.alert_at))]
            args += [repr(f) for f in b.alert_at]
        async with asyncio.timeout(self.timeout_s):
            return await script(keys=keys, args=args)

    def _outcome(
        self, demands: Sequence[Demand], charges: Sequence[Charge], reply: list[Any]
    ) -> Outcome:
        # `_RESERVE`'s reply: admitted, refused buckets, refused counters, crossings.
        admitted, short, over, crossed = reply
        if admitted:
            return Outcome((), self, (), self._crossings(charges, crossed))
        refusing = [(charges[int(over[j]) - 1], int(over[j + 1])) for j in range(0, len(over), 2)]
        overspends = [Overspend(charge.budget, spent, charge.nano) for charge, spent in refusing]
        return Outcome(self._shortfalls(demands, short), self, tuple(overspends))

    @staticmethod
    def _shortfalls(demands: Sequence[Demand], refused: list[Any]) -> tuple[Shortfall, ...]:
        # [i, wait_s, i, wait_s, ...] (1-based i; wait -1: never)
        found: list[Shortfall] = []
        for i in range(0, len(refused), 2):
            wait = float(refused[i + 1])
            bucket = demands[int(refused[i]) - 1].bucket
            found.append(Shortfall(bucket, math.inf if wait < 0 else wait))
        return tuple(found)

    @staticmethod
    def _crossings(charges: Sequence[Charge], reply: list[Any]) -> tuple[Crossing, ...]:
        found: list[Crossing] = []
        for j, told, reached, spent in reply:
            found += crossings(charges[int(j) - 1], int(told), int(reached), int(spent))
        return tuple(found)

    def _went_down(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._next_attempt = now + self.retry_interval_s
        if self._down_since is None:
            self._down_since = now
            then = (
                "answering from per-replica local limits"
                if self.policy == "fail_open"
                else "refusing requests"
            )
            log.warning(
                "rate-limit store Redis at %s is unreachable (%s: %s); %s until it answers",
                self.url,
                type(exc).__name__,
                exc,
                then,
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.warning(
                "rate-limit store Redis at %s answers again after %.1fs; limits are shared again",
                self.url,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
