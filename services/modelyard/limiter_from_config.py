"""The gateway limiter's settings: the configuration file, overridden by the environment.

Environment variables (`modelyard.ratelimit.config`) win over the file's
`rate_limits:` section, so an operator can point a running deployment at
Redis or change a quota without editing the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from modelyard.config import ModelyardConfig, RateLimit
from modelyard.ratelimit import LimiterConfig, QuotaConfig, Rates
from modelyard.ratelimit.config import (
    FAILURE_POLICY_ENV,
    PER_KEY_ENV,
    PER_PROVIDER_ENV,
    REDIS_URL_ENV,
)


def _rates(limit: RateLimit) -> Rates:
    return Rates(limit.requests_per_minute or 0.0, limit.tokens_per_minute or 0.0)


def limiter_config(config: ModelyardConfig, env: Mapping[str, str] | None = None) -> LimiterConfig:
    env = os.environ if env is None else env
    from_env = LimiterConfig.from_env(env)
    section = config.rate_limits
    quotas = QuotaConfig(
        per_key=from_env.quotas.per_key if env.get(PER_KEY_ENV) else _rates(section.per_key),
        per_provider=from_env.quotas.per_provider
        if env.get(PER_PROVIDER_ENV)
        else {name: _rates(limit) for name, limit in section.per_provider.items()},
    )
    return dataclasses.replace(
        from_env,
        quotas=quotas,
        redis_url=from_env.redis_url if env.get(REDIS_URL_ENV) else section.redis_url,
        failure_policy=from_env.failure_policy
        if env.get(FAILURE_POLICY_ENV)
        else section.on_redis_failure,
    )
