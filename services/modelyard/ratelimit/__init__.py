"""Rate limits and quotas of the gateway, in process or shared by replicas through Redis.

`modelyard.gateway.limits.ModelLimits` is the gateway's entry point; this package
holds its parts: which buckets a request draws from (`plan`), which spend budgets
(`spend`: US dollars per UTC day and month, per key and team), where they live
(`local`, `redis_store`) and how it is configured (`config`). How it fails
(`QuotaExceeded`, `QuotaNeverFits`, `BudgetExceeded`, `RateLimiterUnavailable`) is in
`modelyard_client.errors` with every other error, re-exported here.
"""

from modelyard.ratelimit.caller import api_key_from_metadata
from modelyard.ratelimit.config import LimiterConfig
from modelyard.ratelimit.local import LocalBucketStore
from modelyard.ratelimit.plan import QuotaConfig, Rates, Scope
from modelyard.ratelimit.redis_store import FailurePolicy, RedisBucketStore
from modelyard.ratelimit.spend import BudgetAlert, BudgetAlerts, SpendConfig, SpendLimits
from modelyard.ratelimit.store import BucketStore, Outcome
from modelyard_client.errors import (
    BudgetExceeded,
    QuotaExceeded,
    QuotaNeverFits,
    RateLimiterUnavailable,
)

__all__ = [
    "BucketStore",
    "BudgetAlert",
    "BudgetAlerts",
    "BudgetExceeded",
    "FailurePolicy",
    "LimiterConfig",
    "LocalBucketStore",
    "Outcome",
    "QuotaConfig",
    "QuotaExceeded",
    "QuotaNeverFits",
    "RateLimiterUnavailable",
    "Rates",
    "RedisBucketStore",
    "Scope",
    "SpendConfig",
    "SpendLimits",
    "api_key_from_metadata",
]
