"""Which token buckets a request draws from, and how much from each.

A request is judged by up to four scopes at once: the caller's key, the key's
team, the model and the model's provider. Each scope has a requests-per-minute
and a tokens-per-minute bucket (an unlimited dimension has none). The key is
the principal's key id when the call is authenticated
(`modelyard.security.principal`), else a fingerprint of the API key it
presented (`Scope.api_key`), as before keys existed. A bucket (the
native `TokenBucket`) holds one minute's allowance and refills continuously.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from modelyard.security.principal import OPEN, Principal
from modelyard_client.errors import InvalidRequest, RefusedLimit
from modelyard_client.v1 import common_pb2

ScopeKind = Literal["key", "team", "model", "provider"]
Unit = Literal["requests", "tokens"]

# The key scope of callers that present no API key.
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Rates:
    """Requests and tokens per minute; 0 means unlimited."""

    requests_per_minute: float = 0.0
    tokens_per_minute: float = 0.0

    @classmethod
    def of(cls, limits: common_pb2.RateLimits) -> Rates:
        return cls(limits.requests_per_minute, limits.tokens_per_minute)

    def overlaid(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> Rates:
        """These rates with each given (not None) one in its place: a key's own over the default."""
        return Rates(
            self.requests_per_minute if requests_per_minute is None else requests_per_minute,
            self.tokens_per_minute if tokens_per_minute is None else tokens_per_minute,
        )

    def problems(self, path: str) -> list[str]:
        """What is wrong with these rates, each naming its key path."""
        return [
            f"{path}.{name}: must be a finite number >= 0, got {value!r}"
            for name, value in (
                ("requests_per_minute", self.requests_per_minute),
                ("tokens_per_minute", self.tokens_per_minute),
            )
            if not (math.isfinite(value) and value >= 0)
        ]


@dataclass(frozen=True)
class QuotaConfig:
    """Limits beyond the model's own: one per API key, one per provider.

    `per_key` applies to every key separately (callers without a key share the
    "anonymous" budget) that has no rates of its own (`Principal.requests_per_minute`,
    `.tokens_per_minute`); `per_team` maps a team name to the budget all its keys
    share (`security.budgets.teams`); `per_provider` maps a provider name
    (`ModelEntry.provider`) to the budget all its models share.
    """

    per_key: Rates = Rates()
    per_provider: Mapping[str, Rates] = field(default_factory=dict)
    per_team: Mapping[str, Rates] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.per_key.problems("per_key")
        for name, rates in self.per_provider.items():
            problems += rates.problems(f"per_provider[{name!r}]")
        for name, rates in self.per_team.items():
            problems += rates.problems(f"per_team[{name!r}]")
        if problems:
            raise InvalidRequest("; ".join(problems))


@dataclass(frozen=True)
class Scope:
    """Whose budget a bucket is: an API key, a model or a provider."""

    kind: ScopeKind
    id: str  # for keys a fingerprint, never the key itself
    label: str  # how errors name it

    @classmethod
    def api_key(cls, key: str | None) -> Scope:
        if not key:
            return cls("key", ANONYMOUS, f"api key '{ANONYMOUS}'")
        # The key is a secret: buckets (and Redis) only ever see its digest.
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return cls("key", digest, f"api key '...{key[-4:]}'")

    @classmethod
    def caller(cls, api_key: str | None, principal: Principal | None) -> Scope:
        """The key scope of a call: its principal's key id when authenticated, else the
        fingerprint of the key it presented (`api_key`)."""
        if principal is None or not authenticated(principal):
            return cls.api_key(api_key)
        return cls("key", principal.key_id, f"key '{principal.key_id}'")

    @classmethod
    def team(cls, name: str) -> Scope:
        return cls("team", name, f"team '{name}'")

    @classmethod
    def model(cls, model_id: str) -> Scope:
        return cls("model", model_id, f"model '{model_id}'")

    @classmethod
    def provider(cls, name: str) -> Scope:
        return cls("provider", name, f"provider '{name}'")

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class Bucket:
    """One dimension of one scope's budget."""

    scope: Scope
    unit: Unit
    per_minute: float

    @property
    def capacity(self) -> float:
        return self.per_minute

    @property
    def refill_per_second(self) -> float:
        return self.per_minute / 60.0

    @property
    def key(self) -> str:
        """Stable name of the bucket, shared by every replica."""
        return f"{self.scope.kind}:{self.scope.id}:{self.unit}"

    @property
    def limit_name(self) -> str:
        return f"{self.unit}_per_minute"


@dataclass(frozen=True)
class Demand:
    """Take `amount` from `bucket`."""

    bucket: Bucket
    amount: float

    @property
    def fits(self) -> bool:
        """Whether the bucket can ever hold this much (a full bucket holds one minute's worth)."""
        return self.amount <= self.bucket.capacity


@dataclass(frozen=True)
class Shortfall:
    """A bucket that refused its demand and how long until it would accept it."""

    bucket: Bucket
    wait_s: float  # math.inf: never (the demand exceeds the bucket's capacity)

    def refused_limit(self) -> RefusedLimit:
        """This shortfall as the plain data a quota error carries."""
        b = self.bucket
        return RefusedLimit(str(b.scope), b.scope.label, b.limit_name, b.per_minute, self.wait_s)


def authenticated(principal: Principal | None) -> bool:
    """Whether a call runs as a key of its own: not outside any call, not as `OPEN`."""
    # `is` first: OPEN itself is the common case, and a dataclass's == compares every field.
    return principal is not None and principal is not OPEN and principal != OPEN


def demands_for(
    model: common_pb2.ModelEntry,
    api_key: str | None,
    tokens: int,
    quotas: QuotaConfig,
    principal: Principal | None = None,
) -> tuple[Demand, ...]:
    """One request of `tokens` tokens against every limited bucket that applies to it."""
    key_rates, team = quotas.per_key, None
    if principal is not None and authenticated(principal):
        key_rates = key_rates.overlaid(principal.requests_per_minute, principal.tokens_per_minute)
        team = principal.team or None
    scoped = [(Scope.caller(api_key, principal), key_rates)]
    team_rates = quotas.per_team.get(team) if team else None
    if team and team_rates is not None:
        scoped.append((Scope.team(team), team_rates))
    scoped.append((Scope.model(model.id), Rates.of(model.limits)))
    provider_rates = quotas.per_provider.get(model.provider)
    if provider_rates is not None:
        scoped.append((Scope.provider(model.provider), provider_rates))
    demands: list[Demand] = []
    for scope, rates in scoped:
        if rates.requests_per_minute > 0:
            demands.append(Demand(Bucket(scope, "requests", rates.requests_per_minute), 1))
        if rates.tokens_per_minute > 0:
            demands.append(Demand(Bucket(scope, "tokens", rates.tokens_per_minute), tokens))
    return tuple(demands)
