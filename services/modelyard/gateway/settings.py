"""Limits and defaults of the gateway's request path."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from modelyard.catalog_ids import catalog_id
from modelyard.config import ModelyardConfig
from modelyard.config.security import InputLimitsConfig
from modelyard.gateway.deadline import DEFAULT_DEADLINE_S
from modelyard.gateway.retries import RetryRules, upstream_of

V = TypeVar("V")


def _empty() -> Mapping[str, V]:
    return types.MappingProxyType({})


@dataclass(frozen=True)
class GatewaySettings:
    # security.input_limits: input bytes, max_tokens, messages, Compare and batch
    # sizes, streams per key, the slow reader's cut; all checked before any backend call.
    input_limits: InputLimitsConfig = field(default_factory=InputLimitsConfig)
    # Used when the request leaves max_tokens at 0, also for rate-limit reservation.
    default_max_tokens: int = 256
    # The deadline of a call whose client sets none (server.default_deadline; CallDeadline).
    default_deadline_s: float = DEFAULT_DEADLINE_S
    # Upper bound on one backend call, whatever deadline the client set.
    backend_timeout_s: float = 600.0
    # With no model named: how many runners-up of the selection to fall back to.
    selection_fallbacks: int = 2
    # gateway.retries; and backends.<name>.max_retries by backend name. A backend
    # without the key (local, Ollama, CoreML, an embedder's engine) retries nothing.
    retries: RetryRules = field(default_factory=RetryRules)
    max_retries: Mapping[str, int] = field(default_factory=_empty)
    # Fallback chains from the file: a model's own (its profile's `fallback`, by
    # catalog id), then the policy's (`selection.fallback`, or the agent's own
    # policy's, `selection.agents.<id>.policy.fallback`, by agent id).
    model_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=_empty)
    fallback: tuple[str, ...] = ()
    agent_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=_empty)
    # Models whose attempt gets a hedge when its first piece is later than this
    # (their profile's `hedge_delay_ms`), by catalog id, in seconds.
    hedge_delays: Mapping[str, float] = field(default_factory=_empty)
    # Models whose hedge delay is this percentile of their live first-piece waits
    # (their profile's `hedge_percentile`; `hedge_delays` until the window holds
    # enough), by catalog id.
    hedge_percentiles: Mapping[str, float] = field(default_factory=_empty)

    @classmethod
    def from_config(
        cls, config: ModelyardConfig, default_deadline_s: float = DEFAULT_DEADLINE_S
    ) -> GatewaySettings:
        """The settings `config` gives; the deadline is resolved elsewhere (flag, variable)."""
        section = config.gateway.retries
        rules = RetryRules(
            max_attempts_per_call=section.max_attempts_per_call,
            budget_ratio=section.budget_ratio,
            budget_window_s=section.budget_window,
            base_backoff_s=section.base_backoff_ms / 1000,
            max_backoff_s=section.max_backoff_ms / 1000,
        )
        max_retries = {
            name: retries
            for name, backend in config.backends.items()
            if isinstance(retries := getattr(backend, "max_retries", None), int)
        }
        model_fallbacks = {
            catalog_id(name, model): profile.fallback
            for name, backend in config.backends.items()
            for model, profile in backend.model_profiles.items()
            if profile.fallback
        }
        hedge_delays = {
            catalog_id(name, model): profile.hedge_delay_ms / 1000
            for name, backend in config.backends.items()
            for model, profile in backend.model_profiles.items()
            if profile.hedge_delay_ms
        }
        hedge_percentiles = {
            catalog_id(name, model): profile.hedge_percentile
            for name, backend in config.backends.items()
            for model, profile in backend.model_profiles.items()
            if profile.hedge_percentile is not None
        }
        agent_fallbacks = {
            agent: rule.policy.fallback
            for agent, rule in config.selection.agents.items()
            if rule.policy is not None
        }
        return cls(
            retries=rules,
            max_retries=types.MappingProxyType(max_retries),
            model_fallbacks=types.MappingProxyType(model_fallbacks),
            fallback=config.selection.fallback,
            agent_fallbacks=types.MappingProxyType(agent_fallbacks),
            hedge_delays=types.MappingProxyType(hedge_delays),
            hedge_percentiles=types.MappingProxyType(hedge_percentiles),
            default_deadline_s=default_deadline_s,
            input_limits=config.security.input_limits,
        )

    @property
    def max_input_bytes(self) -> int:
        """Inputs larger than this are refused with RESOURCE_EXHAUSTED before any call."""
        return self.input_limits.max_input_bytes

    @property
    def max_tokens_ceiling(self) -> int:
        """max_tokens above this is refused, whatever the model."""
        return self.input_limits.max_tokens

    def hedges(self, model_id: str) -> bool:
        """Whether `model_id`'s attempts may be hedged (a delay or a percentile set)."""
        return model_id in self.hedge_delays or model_id in self.hedge_percentiles

    def max_retries_of(self, model_id: str) -> int:
        """Retries of one model after its first attempt: its backend's `max_retries`."""
        return self.max_retries.get(upstream_of(model_id), 0)

    def fallbacks_of(self, model_id: str, agent_id: str) -> tuple[str, ...]:
        """The file's fallback chain after `model_id`: the model's own, then the policy's."""
        policy = self.agent_fallbacks.get(agent_id, self.fallback) if agent_id else self.fallback
        return self.model_fallbacks.get(model_id, ()) + policy
