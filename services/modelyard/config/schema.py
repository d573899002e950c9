"""The frozen configuration: everything under `model_system:` in the file.

Every section is optional. Field names are the file's keys; the annotations say
what each accepts (see `values.py`); `violations()` states rules across keys.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from modelyard.backends.admission import DEFAULT_MAX_IN_FLIGHT
from modelyard.catalog_ids import backend_name_problem, name_problem
from modelyard.config.backends import Backend, backend_schema
from modelyard.config.convert import ByKind, NonEmpty, OneOf, Range, Url
from modelyard.config.problems import suggestion
from modelyard.config.values import (
    CAPABILITIES,
    Count,
    Fraction,
    Millis,
    MillisOrZero,
    Seconds,
    SecondsOrZero,
)
from modelyard.route_keys import TASK_TYPES

Algorithm = Literal["multi_criteria", "round_robin", "least_latency", "lowest_cost", "random"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
ModelRef = Annotated[str, NonEmpty()]  # "provider/model", e.g. "ollama/gemma3:4b"


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    listen: Annotated[str, NonEmpty()] = "127.0.0.1:50051"
    data_dir: Path | None = None  # default: $MODELYARD_DATA_DIR or ~/.local/share/modelyard
    models_dir: Path | None = None  # default: DATA_DIR/models
    grace_period: Seconds = 30.0
    # How long a stopping server still accepts connections, NOT_SERVING, before
    # refusing them (part of grace_period).
    drain_notice: SecondsOrZero = 2.0
    log_level: LogLevel = "INFO"
    # The deadline of a gateway call whose client sets none; default 60s
    # (modelyard.gateway.deadline.DEFAULT_DEADLINE_S).
    default_deadline: Seconds | None = None

    def violations(self) -> Iterator[tuple[str, str]]:
        host, _, port = self.listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            yield "listen", f"'{self.listen}' is not host:port (e.g. 127.0.0.1:50051)"


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    # The calls one gateway holds at once, all backends together; one more is
    # refused at once with RESOURCE_EXHAUSTED and a retry delay.
    max_in_flight: Count = DEFAULT_MAX_IN_FLIGHT


@dataclass(frozen=True, kw_only=True)
class RegistryConfig:
    discovery_interval: Seconds = 30.0
    health_check_interval: Seconds = 10.0
    cache_ttl: Seconds = 3600.0


@dataclass(frozen=True, kw_only=True)
class Weights:
    """Multi-criteria weights; a weight left out of a `weights:` mapping is 0."""

    performance: Fraction = 0.0
    cost: Fraction = 0.0
    reliability: Fraction = 0.0
    capabilities: Fraction = 0.0

    def violations(self) -> Iterator[tuple[str, str]]:
        if self.performance + self.cost + self.reliability + self.capabilities <= 0:
            yield "", "must not all be 0 (give at least one weight a value above 0)"


# The selection weights when the file gives none: the only place they are written (the
# selector takes its defaults from the configuration and has none of its own).
DEFAULT_WEIGHTS = Weights(performance=0.4, cost=0.3, reliability=0.2, capabilities=0.1)


@dataclass(frozen=True, kw_only=True)
class Constraints:
    max_latency_ms: Millis | None = None
    max_cost_per_request: Annotated[float, Range(min=0)] | None = None  # US dollars
    min_context_window: Count | None = None
    min_reliability: Fraction | None = None
    required_capabilities: tuple[Annotated[str, OneOf(CAPABILITIES)], ...] = ()


@dataclass(frozen=True, kw_only=True)
class SelectionPolicy:
    algorithm: Algorithm = "multi_criteria"
    weights: Weights = DEFAULT_WEIGHTS
    constraints: Constraints = field(default_factory=Constraints)
    fallback: tuple[ModelRef, ...] = ()  # tried in order when the chosen model fails


@dataclass(frozen=True, kw_only=True)
class AgentRule:
    """An agent pinned to one model, or given a policy of its own."""

    model: ModelRef | None = None
    policy: SelectionPolicy | None = None

    def violations(self) -> Iterator[tuple[str, str]]:
        if (self.model is None) == (self.policy is None):
            yield "", "set exactly one of 'model' or 'policy'"


@dataclass(frozen=True, kw_only=True)
class SelectionConfig(SelectionPolicy):
    agents: Mapping[str, AgentRule] = field(default_factory=lambda: types.MappingProxyType({}))


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """0 or absent means no limit."""

    requests_per_minute: Annotated[float, Range(min=0)] | None = None
    tokens_per_minute: Annotated[float, Range(min=0)] | None = None


@dataclass(frozen=True, kw_only=True)
class RateLimitsConfig:
    per_key: RateLimit = field(default_factory=RateLimit)  # for each client API key
    per_provider: Mapping[str, RateLimit] = field(
        default_factory=lambda: types.MappingProxyType({})
    )  # keyed by backend name
    redis_url: Annotated[str, Url(("redis", "rediss"))] | None = None  # None: in process only
    on_redis_failure: Literal["fail_open", "fail_closed"] = "fail_open"


@dataclass(frozen=True, kw_only=True)
class HotSwapConfig:
    enabled: bool = True
    grace_period_ms: MillisOrZero = 30_000
    validation_timeout_ms: Millis = 5_000
    rollback_on_failure: bool = True
    # Aliases a request's `model` may name, each pointing at a catalog id
    # (``chat-default: local/gemma-3-270m-q4_k_m``). Seeds the route table: a
    # route it already holds keeps its model (a swap outlives a restart).
    routes: Mapping[str, ModelRef] = field(default_factory=lambda: types.MappingProxyType({}))
    # Task types (chat, code, summarization, ...) whose requests, naming no
    # model, go to this model before any selection.
    task_routes: Mapping[str, ModelRef] = field(default_factory=lambda: types.MappingProxyType({}))


@dataclass(frozen=True, kw_only=True)
class AlertThresholds:
    error_rate: Fraction = 0.05
    latency_p95_ms: Millis = 2_000


@dataclass(frozen=True, kw_only=True)
class MonitoringConfig:
    metrics_interval: Seconds = 5.0
    health_check_interval: Seconds = 30.0
    alert_thresholds: AlertThresholds = field(default_factory=AlertThresholds)


@dataclass(frozen=True, kw_only=True)
class ModelyardConfig:
    """The whole of `model_system:`, validated and immutable."""

    server: ServerConfig = field(default_factory=ServerConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    backends: Annotated[Mapping[str, Backend], ByKind(backend_schema)] = field(
        default_factory=lambda: types.MappingProxyType({})
    )
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    rate_limits: RateLimitsConfig = field(default_factory=RateLimitsConfig)
    hot_swap: HotSwapConfig = field(default_factory=HotSwapConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    # The key paths the file gave (below `model_system.`), set by the loader; not a key.
    given_keys: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def active_backends(self) -> dict[str, Backend]:
        """The backends that will run (enabled, with their key or endpoint set)."""
        return {n: b for n, b in self.backends.items() if b.disabled_reason is None}

    def model_ids(self) -> list[str]:
        """``provider/model`` for every model the active backends list by name."""
        return [f"{n}/{m}" for n, b in self.active_backends().items() for m in b.models]

    def violations(self) -> Iterator[tuple[str, str]]:
        for name in self.backends:  # a backend's name starts its models' catalog ids
            problem = backend_name_problem(name)
            if problem is not None:
                yield f"backends.{name}", problem
        for name in self.rate_limits.per_provider:
            if name not in self.backends:
                yield (
                    f"rate_limits.per_provider.{name}",
                    f"no backend '{name}'{suggestion(name, self.backends)}",
                )
        yield from self._model_refs("selection", self.selection)
        for alias, ref in self.hot_swap.routes.items():
            problem = name_problem("the alias", alias)
            if problem is not None:
                yield f"hot_swap.routes.{alias}", problem
            yield from self._model_ref(f"hot_swap.routes.{alias}", ref)
        for task, ref in self.hot_swap.task_routes.items():
            if task not in TASK_TYPES:
                yield (
                    f"hot_swap.task_routes.{task}",
                    f"'{task}' is not a task type{suggestion(task, TASK_TYPES)}; "
                    f"task types: {', '.join(TASK_TYPES)}",
                )
            yield from self._model_ref(f"hot_swap.task_routes.{task}", ref)
        for agent, rule in self.selection.agents.items():
            where = f"selection.agents.{agent}"
            if rule.model is not None:
                yield from self._model_ref(f"{where}.model", rule.model)
            if rule.policy is not None:
                yield from self._model_refs(f"{where}.policy", rule.policy)

    def _model_refs(self, where: str, policy: SelectionPolicy) -> Iterator[tuple[str, str]]:
        for i, ref in enumerate(policy.fallback):
            yield from self._model_ref(f"{where}.fallback[{i}]", ref)

    def _model_ref(self, where: str, ref: str) -> Iterator[tuple[str, str]]:
        provider, _, model = ref.partition("/")
        backend = self.backends.get(provider)
        if not model:
            yield where, f"'{ref}' is not provider/model (e.g. ollama/gemma3:4b)"
        elif backend is None:
            yield where, f"no backend '{provider}'{suggestion(provider, self.backends)}"
        elif backend.models and model not in backend.models:
            yield (
                where,
                f"'{model}' is not in backends.{provider}.models"
                f"{suggestion(model, backend.models)}",
            )
