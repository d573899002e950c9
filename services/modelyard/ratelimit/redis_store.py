"""Buckets in Redis, shared by every gateway replica.

Every decision is one Lua script: it reads the server's clock (`TIME`, so the
replicas' clocks never matter), refills and checks every bucket of the request,
and takes from all of them or from none. Refunds are a second, smaller script.
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

from modelyard.errors import InvalidRequest, RateLimiterUnavailable
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import Demand, Shortfall
from modelyard.ratelimit.store import Outcome

log = logging.getLogger(__name__)

FailurePolicy = Literal["fail_open", "fail_closed"]
FAILURE_POLICIES: tuple[FailurePolicy, ...] = ("fail_open", "fail_closed")

# The hash tag keeps every bucket in one cluster slot, as a multi-key script needs.
DEFAULT_KEY_PREFIX = "modelyard:{ratelimit}:"

# ARGV holds (capacity, refill per second, amount) per key. A bucket is a hash of
# its level, when that level was measured and the capacity it was built with: a
# missing bucket, or one built with another capacity (limits changed), is full.
# It expires once it would have refilled, which leaves it full as well.
_TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local refused = {0}
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local amount = tonumber(ARGV[3 * i])
  local state = redis.call('HMGET', key, 'level', 'at', 'cap')
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
    refused[#refused + 1] = i
    refused[#refused + 1] = string.format('%.6f', wait)
  end
end
if #refused > 1 then return refused end
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local left = levels[i] - tonumber(ARGV[3 * i])
  redis.call('HSET', key, 'level', string.format('%.17g', left),
    'at', string.format('%.17g', now), 'cap', ARGV[3 * i - 2])
  redis.call('PEXPIRE', key, math.ceil((cap - left) / rate * 1000) + 1000)
end
return {1}
"""

_GIVE_BACK = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local state = redis.call('HMGET', key, 'level', 'at', 'cap')
  -- A missing or rebuilt bucket is already full: nothing to give back to.
  if state[1] and tonumber(state[3]) == cap then
    local level = tonumber(state[1])
    local at = tonumber(state[2])
    if now > at then
      level = level + (now - at) * rate
      at = now
    end
    level = math.min(cap, level + tonumber(ARGV[3 * i]))
    redis.call('HSET', key, 'level', string.format('%.17g', level),
      'at', string.format('%.17g', at))
    redis.call('PEXPIRE', key, math.ceil((cap - level) / rate * 1000) + 1000)
  end
end
return 1
"""

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
        self._take = self._client.register_script(_TAKE)
        self._give_back = self._client.register_script(_GIVE_BACK)
        self._down_since: float | None = None  # monotonic; None while Redis answers
        self._next_attempt = 0.0

    @property
    def reachable(self) -> bool:
        """False from a failed call until a call succeeds again."""
        return self._down_since is None

    async def take(self, demands: Sequence[Demand]) -> Outcome:
        if not demands:
            return Outcome((), self)
        if self._down_since is None or time.monotonic() >= self._next_attempt:
            try:
                reply = await self._run(self._take, demands)
            except _OUTAGE as exc:
                self._went_down(exc)
            else:
                self._came_back()
                return Outcome(self._shortfalls(demands, reply), self)
        if self.policy == "fail_closed":
            raise RateLimiterUnavailable(
                f"the rate-limit store (Redis at {self.url}) is unreachable; requests are "
                "refused until it answers again (failure policy fail_closed)"
            )
        return await self.fallback.take(demands)

    async def give_back(self, demands: Sequence[Demand]) -> None:
        if not demands or self._down_since is not None:
            return  # a lost refund only makes the limit stricter for a while
        try:
            await self._run(self._give_back, demands)
        except _OUTAGE as exc:
            self._went_down(exc)

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()

    async def _run(self, script: Any, demands: Sequence[Demand]) -> Any:
        keys = [self.key_prefix + d.bucket.key for d in demands]
        args: list[str] = []
        for d in demands:
            args += [repr(d.bucket.capacity), repr(d.bucket.refill_per_second), repr(d.amount)]
        async with asyncio.timeout(self.timeout_s):
            return await script(keys=keys, args=args)

    @staticmethod
    def _shortfalls(demands: Sequence[Demand], reply: list[Any]) -> tuple[Shortfall, ...]:
        # [1] when admitted; [0, i, wait_s, i, wait_s, ...] (1-based i; wait -1: never)
        found: list[Shortfall] = []
        for i in range(1, len(reply), 2):
            wait = float(reply[i + 1])
            found.append(
                Shortfall(demands[int(reply[i]) - 1].bucket, math.inf if wait < 0 else wait)
            )
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
