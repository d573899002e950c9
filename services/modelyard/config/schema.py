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
from modelyard.config.security import SecurityConfig
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
from modelyard.storage.url import database_url_problem

Algorithm = Literal["multi_criteria", "round_robin", "least_latency", "lowest_cost", "random"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
ModelRef = Annotated[str, NonEmpty()]  # "provider/model", e.g. "ollama/gemma3:4b"


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    listen: Annotated[str, NonEmpty()] = "127.0.0.1:50051"
    data_dir: Path | None = None  # default: $MODELYARD_DATA_DIR or ~/.local/share/modelyard
    # The registry's, hot-swap's and gateway's tables on PostgreSQL
    # (postgresql://USER:PASSWORD@HOST:PORT/DATABASE; $MODELYARD_DATABASE_URL wins);
    # default: SQLite files in data_dir.
    database_url: str | None = None
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
        if self.database_url is not None and (problem := database_url_problem(self.database_url)):
            yield "database_url", problem


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    """Retries of a failed model attempt on the same model, before its fallbacks."""

    # No retry once a call has sent this many attempts, every model and retry
    # counted; each model of its fallback chain still gets its first attempt.
    max_attempts_per_call: Count = 4
    # Retries (and hedges) to one upstream are at most this share of its
    # requests over `budget_window`, as Envoy's retry budget.
    budget_ratio: Fraction = 0.2
    budget_window: Seconds = 10.0
    # Full-jitter exponential backoff: the n-th retry waits a random time up to
    # min(max_backoff_ms, base_backoff_ms * 2**n).
    base_backoff_ms: Millis = 100
    max_backoff_ms: Millis = 2_000


@dataclass(frozen=True, kw_only=True)
class TimeoutConfig:
    """Deadlines inside one model attempt; the caller's deadline bounds them all."""

    connect_timeout_ms: Millis = 5_000
    # Until the first piece of an answer; 0: none but the call's deadline. A
    # model's own `first_token_timeout_ms` (its profile) wins.
    first_token_timeout_ms: MillisOrZero = 30_000
    # Between pieces once a stream has started; 0: none.
    stall_timeout_ms: MillisOrZero = 30_000


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """The response cache: exact repeats of deterministic requests, answered without a call."""

    enabled: bool = False
    ttl: Seconds = 3600.0
    max_entries: Count = 10_000  # in memory, least recently used dropped first
    # Shared by every gateway when set; else each gateway keeps its own in memory.
    redis_url: Annotated[str, Url(("redis", "rediss"))] | None = None
    # Only requests with temperature 0 or a seed are cached, unless this is false.
    deterministic_only: bool = True


@dataclass(frozen=True, kw_only=True)
class CircuitConfig:
    """Each deployment's circuit: when it opens, for how long, how it closes again."""

    consecutive_failures: Count = 5  # failures in a row that open it
    # Open for base_ejection, then one probe decides: success closes it, failure
    # opens it again for twice as long, at most max_ejection.
    base_ejection: Seconds = 5.0
    max_ejection: Seconds = 30.0
    probe_timeout: Seconds = 60.0  # a probe with no finish by then counts as failed
    # At most this share of a model's deployments are out at once; 1: a model whose
    # every deployment fails is out, and its calls go to their fallbacks.
    max_ejected_share: Fraction = 1.0
    # It opens too when, of the calls that ended in the last `window` (at least
    # `min_requests` of them), this share or more were the deployment's fault
    # (unreachable, timed out, cut off): a flapping deployment that never fails
    # `consecutive_failures` times in a row. 0: this rule is off.
    failure_rate: Fraction = 0.5
    min_requests: Count = 20
    window: Seconds = 10.0

    def violations(self) -> Iterator[tuple[str, str]]:
        if self.max_ejection < self.base_ejection:
            yield "max_ejection", "must be >= base_ejection"


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    # The calls one gateway holds at once, all backends together; one more is
    # refused at once with RESOURCE_EXHAUSTED and a retry delay.
    max_in_flight: Count = DEFAULT_MAX_IN_FLIGHT
    retries: RetryConfig = field(default_factory=RetryConfig)
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    circuit: CircuitConfig = field(default_factory=CircuitConfig)


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
    # A file every gateway process on this host maps (e.g. /dev/shm/modelyard-limits):
    # their buckets and budgets are one, without Redis. None: this process's own.
    shared_memory: Path | None = None


@dataclass(frozen=True, kw_only=True)
class CanaryConfig:
    """How a swap with `canary` moves traffic, and what counts as a regression."""

    # Percent of the alias's calls the new version takes at each step; the last is 100.
    steps: tuple[Annotated[float, Range(min=0, max=100, above=True)], ...] = (5, 25, 50, 100)
    # A step ends once the new version has answered this many calls and the
    # step has lasted `step_ms`; the comparison is made then.
    step_requests: Count = 50
    step_ms: MillisOrZero = 10_000
    # The new version regresses when its error rate exceeds the old one's by
    # more than this (absolute: 0.05 is five points) ...
    max_error_rate_increase: Fraction = 0.05
    # ... or its p95 latency exceeds the old one's by more than this fraction.
    max_latency_p95_increase: Annotated[float, Range(min=0)] = 0.5
    # ... and by at least this many ms (fast models' p95s differ by noise).
    min_latency_increase_ms: MillisOrZero = 20


@dataclass(frozen=True, kw_only=True)
class ABTestDefaults:
    """What `StartABTest` takes when the request leaves it unset."""

    alpha: Annotated[float, Range(min=0, max=0.5, above=True)] = 0.05  # false winners at most
    min_samples_per_arm: Count = 30


@dataclass(frozen=True, kw_only=True)
class HotSwapConfig:
    enabled: bool = True
    grace_period_ms: MillisOrZero = 30_000
    validation_timeout_ms: Millis = 5_000
    # A canary step that regresses rolls the swap back on its own; false: the
    # swap holds at that step, recorded, until it is rolled back by hand.
    rollback_on_failure: bool = True
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    ab_tests: ABTestDefaults = field(default_factory=ABTestDefaults)
    # After a swap drains, the previous version is unloaded from its local
    # backend ("unload") or kept loaded as a standby for a quick rollback
    # ("keep_warm", evicted like any model when the memory budget needs room).
    standby: Literal["unload", "keep_warm"] = "keep_warm"
    # Memory the local backends' loaded models may take, in MiB; absent: three
    # quarters of the machine's memory.
    memory_budget_mb: Annotated[int, Range(min=1)] | None = None
    # When the budget cannot hold both versions of a swap: refuse it before the
    # switch ("refuse"), or switch and let the old version drain and unload
    # before the new one loads ("drain_first": new calls wait for the load).
    when_budget_short: Literal["refuse", "drain_first"] = "refuse"
    # A loaded local model no call has used for this long is unloaded; 0: never.
    idle_timeout_ms: MillisOrZero = 0
    # Local models loaded at start, before the first call asks for them.
    preload: tuple[ModelRef, ...] = ()
    # Aliases a request's `model` may name, each pointing at a catalog id
    # (``chat-default: local/gemma-3-270m-q4_k_m``). Seeds the route table: a
    # route it already holds keeps its model (a swap outlives a restart).
    routes: Mapping[str, ModelRef] = field(default_factory=lambda: types.MappingProxyType({}))
    # Task types (chat, code, summarization, ...) whose requests, naming no
    # model, go to this model before any selection.
    task_routes: Mapping[str, ModelRef] = field(default_factory=lambda: types.MappingProxyType({}))


@dataclass(frozen=True, kw_only=True)
class AlertThresholds:
    """What breaks a model's window (the gateway's last 60s of its attempts), evaluated
    every metrics_interval (`modelyard.gateway.alerts`)."""

    error_rate: Fraction = 0.05  # failed share of attempts above this fires
    latency_p95_ms: Millis = 2_000
    # The window's answers' cost at its pace, US dollars per hour; 0 or absent: off.
    cost_per_hour_usd: Annotated[float, Range(min=0)] | None = None


@dataclass(frozen=True, kw_only=True)
class AlertWebhook:
    """Where alerts are posted, a Slack-compatible JSON body (`modelyard.gateway.webhook`)."""

    # A secret (Slack's hook URLs are): its path and query are scrubbed from every log;
    # give it from the environment, e.g. "${ALERT_WEBHOOK_URL}".
    url: Annotated[str, Url(), NonEmpty()] = field(repr=False)
    timeout: Seconds = 5.0  # one post
    max_attempts: Count = 5  # tries of one message, with exponential backoff between


@dataclass(frozen=True, kw_only=True)
class MonitoringConfig:
    metrics_interval: Seconds = 5.0
    # How often the gateway checks each deployment (gateway/health_monitor.py).
    health_check_interval: Seconds = 30.0
    # What runs, in order, when a deployment fails its checks twice in a row:
    # "eject" (no call goes to it until a check passes), "reload" (its backend
    # unloads and loads the model again), "reconnect" (a new channel to a remote
    # backend), "standby" (once every deployment of a model has failed, each route
    # it serves is swapped to its first healthy fallback; needs hot-swap).
    # Empty: only its health is set.
    recovery: tuple[Literal["eject", "reload", "reconnect", "standby"], ...] = ("eject",)
    alert_thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    alert_webhook: AlertWebhook | None = None  # absent: alerts are logged only

    def violations(self) -> Iterator[tuple[str, str]]:
        for i, action in enumerate(self.recovery):
            if action in self.recovery[:i]:
                yield f"recovery[{i}]", f"'{action}' is named twice"


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
    security: SecurityConfig = field(default_factory=SecurityConfig)
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
        steps = self.hot_swap.canary.steps
        if not steps or list(steps) != sorted(set(steps)) or steps[-1] != 100:
            yield (
                "hot_swap.canary.steps",
                f"must rise step by step and end at 100, not {', '.join(f'{s:g}' for s in steps)}",
            )
        for i, ref in enumerate(self.hot_swap.preload):
            yield from self._model_ref(f"hot_swap.preload[{i}]", ref)
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
