"""How the gateway's rate limiter is set up: in process, shared on one host through a
mapped file, or shared through Redis.

From the environment (`LimiterConfig.from_env`):

- ``MODELYARD_REDIS_URL``: ``redis://[:password@]host:port/db``; unset or empty
  keeps the buckets in process.
- ``MODELYARD_RATE_LIMIT_FAILURE_POLICY``: ``fail_open`` (default) or ``fail_closed``.
- ``MODELYARD_REDIS_TIMEOUT_S``: the longest a decision waits for Redis (default 0.25).
- ``MODELYARD_RATE_LIMIT_SHARED_MEMORY``: a file every gateway process on this host
  maps, sharing their buckets and budgets without Redis (``ratelimit/shared.py``).
- ``MODELYARD_QUOTA_PER_KEY``: every API key's budget, e.g. ``rpm=60,tpm=100000``.
- ``MODELYARD_QUOTA_PER_PROVIDER``: budgets shared by a provider's models,
  e.g. ``openai:rpm=500,tpm=200000;ollama:rpm=60``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.config.security import BudgetsConfig
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import QuotaConfig, Rates
from modelyard.ratelimit.redis_store import (
    DEFAULT_KEY_PREFIX,
    FAILURE_POLICIES,
    FailurePolicy,
    RedisBucketStore,
)
from modelyard.ratelimit.shared import SharedBucketStore
from modelyard.ratelimit.spend import SpendConfig, SpendLimits
from modelyard.ratelimit.store import BucketStore
from modelyard_client.errors import InvalidRequest

REDIS_URL_ENV = "MODELYARD_REDIS_URL"
FAILURE_POLICY_ENV = "MODELYARD_RATE_LIMIT_FAILURE_POLICY"
REDIS_TIMEOUT_ENV = "MODELYARD_REDIS_TIMEOUT_S"
SHARED_MEMORY_ENV = "MODELYARD_RATE_LIMIT_SHARED_MEMORY"
PER_KEY_ENV = "MODELYARD_QUOTA_PER_KEY"
PER_PROVIDER_ENV = "MODELYARD_QUOTA_PER_PROVIDER"

_RATE_NAMES = {
    "rpm": "requests_per_minute",
    "requests_per_minute": "requests_per_minute",
    "tpm": "tokens_per_minute",
    "tokens_per_minute": "tokens_per_minute",
}


@dataclass(frozen=True)
class LimiterConfig:
    """Everything the gateway's limiter needs; the defaults keep buckets in process.

    Team rates (`quotas.per_team`) and spend budgets (`spend`) come from the
    file's `security.budgets` only (`assembly.settings.limiter_settings`).
    """

    quotas: QuotaConfig = field(default_factory=QuotaConfig)
    spend: SpendConfig = field(default_factory=SpendConfig)  # `security.budgets`
    redis_url: str | None = None
    failure_policy: FailurePolicy = "fail_open"
    redis_timeout_s: float = 0.25
    redis_retry_interval_s: float = 1.0
    redis_key_prefix: str = DEFAULT_KEY_PREFIX
    shared_memory: Path | None = None  # the host's shared table, instead of Redis

    def __post_init__(self) -> None:
        if self.redis_url and self.shared_memory is not None:
            raise InvalidRequest(
                "rate_limits: redis_url and shared_memory both given; limits live in one "
                "place: Redis to share them across hosts, shared_memory within one host"
            )
        if self.failure_policy not in FAILURE_POLICIES:
            raise InvalidRequest(
                f"failure_policy: must be one of {', '.join(FAILURE_POLICIES)}, "
                f"got {self.failure_policy!r}"
            )
        for name in ("redis_timeout_s", "redis_retry_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidRequest(f"{name}: must be a number > 0, got {value!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LimiterConfig:
        """Read the variables listed in this module's docstring (`env` defaults to os.environ)."""
        env = os.environ if env is None else env
        policy = env.get(FAILURE_POLICY_ENV, "").strip() or "fail_open"
        if policy not in FAILURE_POLICIES:
            raise InvalidRequest(
                f"{FAILURE_POLICY_ENV}: must be one of {', '.join(FAILURE_POLICIES)}, "
                f"got {policy!r}"
            )
        timeout = env.get(REDIS_TIMEOUT_ENV, "").strip()
        try:
            timeout_s = float(timeout) if timeout else 0.25
        except ValueError:
            raise InvalidRequest(f"{REDIS_TIMEOUT_ENV}: not a number: {timeout!r}") from None
        if not (math.isfinite(timeout_s) and timeout_s > 0):
            raise InvalidRequest(f"{REDIS_TIMEOUT_ENV}: must be a number > 0, got {timeout!r}")
        return cls(
            quotas=QuotaConfig(
                per_key=parse_rates(env.get(PER_KEY_ENV, ""), PER_KEY_ENV),
                per_provider=parse_provider_rates(env.get(PER_PROVIDER_ENV, ""), PER_PROVIDER_ENV),
            ),
            redis_url=env.get(REDIS_URL_ENV, "").strip() or None,
            shared_memory=Path(shared)
            if (shared := env.get(SHARED_MEMORY_ENV, "").strip())
            else None,
            failure_policy=policy,
            redis_timeout_s=timeout_s,
        )

    def build_store(self) -> BucketStore:
        """The bucket store this config describes (a Redis client is created, not connected)."""
        if self.shared_memory is not None:
            return SharedBucketStore(self.shared_memory)
        if not self.redis_url:
            return LocalBucketStore()
        return RedisBucketStore(
            self.redis_url,
            policy=self.failure_policy,
            timeout_s=self.redis_timeout_s,
            retry_interval_s=self.redis_retry_interval_s,
            key_prefix=self.redis_key_prefix,
        )


def parse_rates(text: str, where: str) -> Rates:
    """``rpm=60,tpm=1000`` (or the long names) into `Rates`; empty means unlimited."""
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        long_name = _RATE_NAMES.get(name.strip())
        if not sep or long_name is None:
            raise InvalidRequest(
                f"{where}: expected rpm=N or tpm=N (comma-separated), got {item!r}"
            )
        try:
            values[long_name] = float(value)
        except ValueError:
            raise InvalidRequest(f"{where}.{long_name}: not a number: {value!r}") from None
    rates = Rates(**values)
    problems = rates.problems(where)
    if problems:
        raise InvalidRequest("; ".join(problems))
    return rates


def parse_provider_rates(text: str, where: str) -> dict[str, Rates]:
    """``openai:rpm=500,tpm=2e5;ollama:rpm=60`` into a provider -> `Rates` map."""
    found: dict[str, Rates] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, rates = item.partition(":")
        if not sep or not name.strip():
            raise InvalidRequest(f"{where}: expected provider:rpm=N,tpm=N, got {item!r}")
        found[name.strip()] = parse_rates(rates, f"{where}[{name.strip()!r}]")
    return found


def team_rates(budgets: BudgetsConfig) -> dict[str, Rates]:
    """`security.budgets.teams` as the teams' rates (absent: unlimited)."""
    return {
        name: Rates(team.requests_per_minute or 0.0, team.tokens_per_minute or 0.0)
        for name, team in budgets.teams.items()
        if team.requests_per_minute or team.tokens_per_minute
    }


def spend_config(budgets: BudgetsConfig) -> SpendConfig:
    """`security.budgets` as the spend budgets: the teams', the keys' default, the alerts."""
    return SpendConfig(
        per_key=SpendLimits(budgets.per_key.daily_usd, budgets.per_key.monthly_usd),
        per_team={
            name: SpendLimits(team.daily_usd, team.monthly_usd)
            for name, team in budgets.teams.items()
            if team.daily_usd or team.monthly_usd
        },
        alert_at=budgets.alert_at,
    )
