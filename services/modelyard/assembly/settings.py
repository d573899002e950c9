"""Every start-up setting, read once: a flag, else its environment variable, else the
configuration file, else the built-in default.

`resolve_settings` is the only code that applies that precedence; everything
after it reads the frozen `Settings`. A mistake in any source (a bad value in
a variable, an invalid file) raises `InvalidRequest` (`ConfigError` for the file)
naming the source, before anything starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.config import ModelyardConfig, RateLimit, default_config, load_config
from modelyard.config.schema import LogLevel
from modelyard.gateway.balancing import STRATEGIES
from modelyard.gateway.deadline import DEFAULT_DEADLINE_S
from modelyard.ratelimit import LimiterConfig, QuotaConfig, Rates
from modelyard.ratelimit.config import (
    FAILURE_POLICY_ENV,
    PER_KEY_ENV,
    PER_PROVIDER_ENV,
    REDIS_URL_ENV,
    SHARED_MEMORY_ENV,
    spend_config,
    team_rates,
)
from modelyard.security.auth_mode import auth_from_env
from modelyard.storage import DATABASE_URL_ENV, DatabaseUrl
from modelyard_client.errors import InvalidRequest

DEFAULT_ADDRESS = "127.0.0.1:50051"
DRAIN_NOTICE_ENV = "MODELYARD_DRAIN_NOTICE_S"
# A stopping server keeps accepting connections this long, NOT_SERVING: two
# checks of a balancer probing every second, or a client watching health, see it
# before connections are refused; short enough that Ctrl-C on `modelyard up` is
# not a wait. Behind an orchestrator whose endpoints update slower, raise it.
DEFAULT_DRAIN_NOTICE_S = 2.0
DEFAULT_DEADLINE_ENV = "MODELYARD_DEFAULT_DEADLINE_S"
HTTP_ADDRESS_ENV = "MODELYARD_HTTP_ADDRESS"
# The OpenAI-compatible HTTP edge of `modelyard up` (`--http-listen`, MODELYARD_HTTP_ADDRESS;
# "off" turns it off).
DEFAULT_HTTP_ADDRESS = "127.0.0.1:8080"
# The Prometheus scrape endpoint (`modelyard.meters`): `up` and `serve` serve it unless told off.
METRICS_ADDRESS_ENV = "MODELYARD_METRICS_ADDRESS"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"
LOG_LEVELS = typing.get_args(LogLevel)
ROLES = (
    "registry",
    "selector",
    "hotswap",
    "gateway",
    "backend-local",
    "backend-openai-compat",
    "backend-coreml",
    "backend-plugins",
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What a modelyard process runs, resolved from every source."""

    config: ModelyardConfig = field(default_factory=lambda: default_config({}))
    config_path: Path | None = None  # the file `config` was read from (--config, MODELYARD_CONFIG)
    listen: str = DEFAULT_ADDRESS
    # The OpenAI-compatible HTTP edge's host:port (`modelyard.edges`), served beside the
    # gateway; None: no edge (`modelyard serve` without --http-listen, embedders, tests).
    http_listen: str | None = None
    # A plaintext listener serving grpc.health.v1 alone (Kubernetes' gRPC probes when the
    # services talk mTLS); None: none.
    health_listen: str | None = None
    # Where ``GET /metrics`` answers in Prometheus' text format (`modelyard.meters`); None:
    # no listener (embedders, tests). The instruments record either way.
    metrics_listen: str | None = None
    roles: tuple[str, ...] = ROLES
    data_dir: Path = field(default_factory=lambda: default_data_dir({}))
    # The PostgreSQL server holding the registry's, hot-swap's and gateway's tables
    # (MODELYARD_DATABASE_URL, server.database_url); None: SQLite files in data_dir.
    database_url: DatabaseUrl | None = None
    # --models-dir / MODELYARD_MODELS_DIR; see `models_dir_for` for the whole rule.
    models_dir: Path | None = None
    grace_s: float = 30.0
    drain_notice_s: float = DEFAULT_DRAIN_NOTICE_S  # part of grace_s, never longer
    log_level: str = "INFO"
    default_deadline_s: float = DEFAULT_DEADLINE_S  # a gateway call's when its client sets none
    registry_address: str | None = None  # required when the registry role is elsewhere
    # The hot-swap service's, when it runs elsewhere: a gateway without one here
    # or there serves no routes (catalog ids only).
    hotswap_address: str | None = None
    advertise: str | None = None  # how others reach this server's backends
    # The response cache one host's gateway processes share (`up --workers N`, the
    # cache on, no Redis: MODELYARD_SHARED_CACHE for the workers); None: each its own.
    shared_cache: Path | None = None
    # The host's gateway processes calling the remote providers (`up --workers N`: N,
    # MODELYARD_GATEWAY_PROCESSES for the workers); each engine holds its share of a
    # backend's max_concurrency and max_queue (`BackendPlan.share`).
    gateway_processes: int = 1
    # Gateway workers (`modelyard up --workers N`): SO_REUSEPORT on the public gRPC and
    # HTTP listeners; the primary's second listener, every service (how workers reach
    # it); a worker's primary, where the calls for services it does not serve go.
    reuse_port: bool = False
    private_listen: str | None = None
    forward_to: str | None = None
    balancing: str = "least_loaded"  # how the gateway spreads a model's deployments
    region: str = ""  # the region "region_affinity" prefers
    limiter: LimiterConfig = field(default_factory=LimiterConfig)
    # Knobs for tests and embedders; the command line leaves them on.
    assemble_default_model: bool = True  # write the packaged Gemma GGUF on first start
    discover_ollama: bool = True  # probe configured Ollama daemons at start
    discovery: bool = True  # run the registry's discovery loop

    def __post_init__(self) -> None:
        unknown = sorted(set(self.roles) - set(ROLES))
        if unknown:
            raise InvalidRequest(f"unknown role(s) {unknown}; choose from {', '.join(ROLES)}")
        if self.log_level not in LOG_LEVELS:
            raise InvalidRequest(
                f"log level '{self.log_level}' is not one of {', '.join(LOG_LEVELS)} "
                "(--log-level, MODELYARD_LOG_LEVEL, server.log_level)"
            )
        if not 0 <= self.drain_notice_s < math.inf:
            raise InvalidRequest(
                f"drain notice {self.drain_notice_s:g}s is not a number of seconds >= 0 "
                f"(--drain-notice, {DRAIN_NOTICE_ENV}, server.drain_notice)"
            )
        if not 0 < self.default_deadline_s < math.inf:
            raise InvalidRequest(
                f"default deadline {self.default_deadline_s:g}s is not a number of seconds > 0 "
                f"(--default-deadline, {DEFAULT_DEADLINE_ENV}, server.default_deadline)"
            )
        if self.balancing not in STRATEGIES:
            raise InvalidRequest(
                f"MODELYARD_BALANCING: '{self.balancing}' is not one of {', '.join(STRATEGIES)}"
            )

    def store_at(self, file_name: str) -> Path | DatabaseUrl:
        """Where a store keeps its tables: the PostgreSQL server when one is set, else
        `file_name` (SQLite) in the data directory."""
        return self.database_url or self.data_dir / file_name

    def models_dir_for(self, own: Path | None) -> Path:
        """The one models-directory rule, for engines and discovery alike: the backend's
        own `models_dir` key, else the server's (flag, env, `server.models_dir`), else
        DATA_DIR/models."""
        return own or self.models_dir or self.config.server.models_dir or self.data_dir / "models"


SHARED_CACHE_ENV = "MODELYARD_SHARED_CACHE"
GATEWAY_PROCESSES_ENV = "MODELYARD_GATEWAY_PROCESSES"


def default_data_dir(env: Mapping[str, str]) -> Path:
    """$MODELYARD_DATA_DIR, else $XDG_DATA_HOME/modelyard, else ~/.local/share/modelyard."""
    given = env.get("MODELYARD_DATA_DIR")
    if given:
        return Path(given).expanduser()
    base = env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "modelyard"


def resolve_settings(
    flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from command-line `flags` (absent or None: not given) and `env`.

    Raises `ConfigError` for an invalid file and `InvalidRequest` for a bad value
    anywhere else.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env

    def pick(flag: str, var: str | None, from_file: object, default: object) -> Any:
        if flag in flags:
            return flags[flag]
        if var is not None and env.get(var):
            return env[var]
        return from_file if from_file is not None else default

    config_path = pick("config", "MODELYARD_CONFIG", None, "")
    config = load_config(config_path, env) if config_path else default_config(env)
    config = auth_from_env(config, env)  # MODELYARD_ADMIN_KEY & co. when the file has none
    server = config.server
    models_dir = pick("models_dir", "MODELYARD_MODELS_DIR", None, "")
    data_dir = pick("data_dir", "MODELYARD_DATA_DIR", server.data_dir, "")
    database_url = str(pick("database_url", DATABASE_URL_ENV, server.database_url, ""))
    return Settings(
        config=config,
        config_path=Path(config_path).expanduser().resolve() if config_path else None,
        listen=str(pick("listen", "MODELYARD_ADDRESS", server.listen, DEFAULT_ADDRESS)),
        health_listen=str(pick("health_listen", "MODELYARD_HEALTH_ADDRESS", None, "")) or None,
        http_listen=_optional_listen(
            pick("http_listen", HTTP_ADDRESS_ENV, None, ""),
            DEFAULT_HTTP_ADDRESS if flags.get("http_default") else None,
            "http_listen",
            HTTP_ADDRESS_ENV,
        ),
        metrics_listen=_optional_listen(
            pick("metrics_listen", METRICS_ADDRESS_ENV, None, ""),
            DEFAULT_METRICS_ADDRESS if flags.get("metrics_default") else None,
            "metrics_listen",
            METRICS_ADDRESS_ENV,
        ),
        roles=tuple(flags.get("roles") or ROLES),
        data_dir=Path(data_dir).expanduser() if data_dir else default_data_dir(env),
        database_url=DatabaseUrl.parse(database_url) if database_url.strip() else None,
        models_dir=Path(models_dir) if models_dir else None,
        grace_s=float(pick("grace", None, server.grace_period, 30.0)),
        drain_notice_s=_seconds(
            pick("drain_notice", DRAIN_NOTICE_ENV, server.drain_notice, DEFAULT_DRAIN_NOTICE_S),
            DRAIN_NOTICE_ENV,
        ),
        log_level=str(pick("log_level", "MODELYARD_LOG_LEVEL", server.log_level, "INFO")).upper(),
        default_deadline_s=_seconds(
            pick(
                "default_deadline",
                DEFAULT_DEADLINE_ENV,
                server.default_deadline,
                DEFAULT_DEADLINE_S,
            ),
            DEFAULT_DEADLINE_ENV,
        ),
        registry_address=str(pick("registry", "MODELYARD_REGISTRY", None, "")) or None,
        hotswap_address=str(pick("hotswap", "MODELYARD_HOTSWAP", None, "")) or None,
        advertise=str(pick("advertise", "MODELYARD_ADVERTISE", None, "")) or None,
        reuse_port=bool(flags.get("reuse_port")),
        private_listen=flags.get("private_listen"),
        forward_to=flags.get("forward_to"),
        balancing=str(pick("balancing", "MODELYARD_BALANCING", None, "least_loaded")),
        region=str(pick("region", "MODELYARD_REGION", None, "")),
        limiter=limiter_settings(config, env),
        shared_cache=Path(shared) if (shared := env.get(SHARED_CACHE_ENV, "").strip()) else None,
        gateway_processes=_processes(env.get(GATEWAY_PROCESSES_ENV, "").strip() or "1"),
    )


def _processes(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise InvalidRequest(f"{GATEWAY_PROCESSES_ENV}: give a whole number >= 1, got {value!r}")
    return int(value)


def _seconds(value: str | float, var: str) -> float:
    """A flag's or the file's float as is; the variable's text read as seconds, naming it."""
    try:
        return float(value)
    except ValueError:  # only the variable's text can be no number
        raise InvalidRequest(
            f"{var}: '{value}' is not a number of seconds (e.g. 2 or 0.5)"
        ) from None


def limiter_settings(config: ModelyardConfig, env: Mapping[str, str]) -> LimiterConfig:
    """The gateway limiter: each environment variable wins over its `rate_limits:` key;
    teams' rates and every spend budget from `security.budgets`."""
    from_env = LimiterConfig.from_env(env)
    section = config.rate_limits

    def rates(limit: RateLimit) -> Rates:
        return Rates(limit.requests_per_minute or 0.0, limit.tokens_per_minute or 0.0)

    quotas = QuotaConfig(
        per_key=from_env.quotas.per_key if env.get(PER_KEY_ENV) else rates(section.per_key),
        per_provider=from_env.quotas.per_provider
        if env.get(PER_PROVIDER_ENV)
        else {name: rates(limit) for name, limit in section.per_provider.items()},
        per_team=team_rates(config.security.budgets),
    )
    return dataclasses.replace(
        from_env,
        quotas=quotas,
        spend=spend_config(config.security.budgets),
        redis_url=from_env.redis_url if env.get(REDIS_URL_ENV) else section.redis_url,
        shared_memory=from_env.shared_memory
        if env.get(SHARED_MEMORY_ENV)
        else section.shared_memory,
        failure_policy=from_env.failure_policy
        if env.get(FAILURE_POLICY_ENV)
        else section.on_redis_failure,
    )


def _optional_listen(given: object, default: str | None, name: str, env: str) -> str | None:
    """A listener's address (the HTTP edge's, the metrics'): the one given ("off": none),
    else `default` (what this command serves unless told off; None: nothing)."""
    text = str(given or "").strip()
    if text.lower() == "off":
        return None
    if not text:
        return default
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        flag = "--" + name.replace("_", "-")
        raise InvalidRequest(
            f"{flag} / {env}: '{text}' is not host:port (e.g. 127.0.0.1:8080), or 'off'",
            field=name,
        )
    return text
