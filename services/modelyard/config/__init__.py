"""The modelyard configuration file: one YAML document under `model_system:`.

`load_config(path)` reads and validates a file, `default_config()` is what runs
without one. Both return a frozen `ModelyardConfig` or raise `ConfigError`
listing every problem with its key path. The keys are the fields of the
dataclasses in `schema.py` and `backends.py`.
"""

from __future__ import annotations

from modelyard.config.backends import (
    Backend,
    BedrockBackend,
    CoreMLBackend,
    HostedBackend,
    LocalBackend,
    ModelProfile,
    OllamaBackend,
    OpenAICompatBackend,
    PluginBackend,
    VertexBackend,
)
from modelyard.config.durations import parse_duration
from modelyard.config.loader import (
    DEFAULT_YAML,
    default_config,
    load_config,
    parse_config,
    summary_lines,
)
from modelyard.config.problems import ConfigError, ConfigFileUnreadable, ConfigProblem
from modelyard.config.schema import (
    AgentRule,
    AlertThresholds,
    Constraints,
    GatewayConfig,
    HotSwapConfig,
    ModelyardConfig,
    MonitoringConfig,
    RateLimit,
    RateLimitsConfig,
    RegistryConfig,
    SelectionConfig,
    SelectionPolicy,
    ServerConfig,
    Weights,
)

__all__ = [
    "DEFAULT_YAML",
    "AgentRule",
    "AlertThresholds",
    "Backend",
    "BedrockBackend",
    "ConfigError",
    "ConfigFileUnreadable",
    "ConfigProblem",
    "Constraints",
    "CoreMLBackend",
    "GatewayConfig",
    "HostedBackend",
    "HotSwapConfig",
    "LocalBackend",
    "ModelProfile",
    "ModelyardConfig",
    "MonitoringConfig",
    "OllamaBackend",
    "OpenAICompatBackend",
    "PluginBackend",
    "RateLimit",
    "RateLimitsConfig",
    "RegistryConfig",
    "SelectionConfig",
    "SelectionPolicy",
    "ServerConfig",
    "VertexBackend",
    "Weights",
    "default_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "summary_lines",
]
