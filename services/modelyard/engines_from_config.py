"""Which engines a backend process runs, as the configuration says.

Kept apart from `stack.py` so the mapping from config sections to engines is
one readable table: local → llama.cpp, ollama → its OpenAI-compatible /v1
(until the native ollama backend exists), openai/mistral/openrouter and
openai_compat entries → the openai_compat engine. Kinds with no engine yet
are reported, not silently dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from modelyard.backends.openai_compat.providers import ProviderEndpoint, normalise_base_url
from modelyard.config import (
    HostedBackend,
    LocalBackend,
    ModelProfile,
    ModelyardConfig,
    OllamaBackend,
    OpenAICompatBackend,
    default_config,
)
from modelyard.v1 import common_pb2

log = logging.getLogger(__name__)

# Hosted providers that speak the OpenAI wire format, and their public API.
OPENAI_WIRE_HOSTS = {
    "openai": "https://api.openai.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
}


@dataclass(frozen=True)
class EnginePlan:
    local: LocalBackend | None
    providers: tuple[ProviderEndpoint, ...]
    ollama: tuple[tuple[str, OllamaBackend], ...]  # probed at start; served through /v1
    not_served: tuple[str, ...]  # "anthropic (kind anthropic): no engine yet"


def plan_engines(config: ModelyardConfig) -> EnginePlan:
    local: LocalBackend | None = None
    providers: list[ProviderEndpoint] = []
    ollama: list[tuple[str, OllamaBackend]] = []
    not_served: list[str] = []
    for name, backend in config.active_backends().items():
        if isinstance(backend, LocalBackend):
            local = backend
        elif isinstance(backend, OllamaBackend):
            ollama.append((name, backend))
        elif isinstance(backend, OpenAICompatBackend):
            providers.append(_endpoint(name, normalise_base_url(backend.endpoint), backend))
        elif isinstance(backend, HostedBackend) and backend.kind in OPENAI_WIRE_HOSTS:
            base = backend.base_url or OPENAI_WIRE_HOSTS[backend.kind]
            providers.append(_endpoint(name, base.rstrip("/"), backend))
        else:
            not_served.append(f"{name} (kind {backend.kind}): no engine for this kind yet")
    for line in not_served:
        log.warning("configured backend %s", line)
    return EnginePlan(local, tuple(providers), tuple(ollama), tuple(not_served))


def providers_from_env(env: dict[str, str] | None = None) -> list[ProviderEndpoint]:
    """The OpenAI-wire providers the built-in default enables from `env` (None: os.environ)."""
    return list(plan_engines(default_config(env)).providers)


def ollama_endpoint(name: str, backend: OllamaBackend) -> ProviderEndpoint:
    return ProviderEndpoint(
        name,
        f"{backend.endpoint.rstrip('/')}/v1",
        models=tuple(backend.models) if not backend.discover else (),
        timeout_s=backend.timeout_ms / 1000,
    )


def _endpoint(
    name: str, base_url: str, backend: OpenAICompatBackend | HostedBackend
) -> ProviderEndpoint:
    return ProviderEndpoint(
        name,
        base_url,
        api_key=backend.api_key or "",
        models=tuple(backend.models),
        timeout_s=backend.timeout_ms / 1000,
    )


def apply_profiles(entries: Iterable[common_pb2.ModelEntry], config: ModelyardConfig) -> None:
    """Overlay each model's configured profile (limits, prices, context) on its entry."""
    profiles = {
        f"{name}/{model}": profile
        for name, backend in config.backends.items()
        for model, profile in backend.model_profiles.items()
    }
    for entry in entries:
        profile = profiles.get(entry.id)
        if profile is not None:
            _overlay(entry, profile)


def _overlay(entry: common_pb2.ModelEntry, profile: ModelProfile) -> None:
    if profile.context_window:
        entry.context_window = profile.context_window
    if profile.requests_per_minute is not None:
        entry.limits.requests_per_minute = profile.requests_per_minute
    if profile.tokens_per_minute is not None:
        entry.limits.tokens_per_minute = profile.tokens_per_minute
    for src, dst in (
        ("usd_per_1m_input_tokens", "usd_per_input_token"),
        ("usd_per_1m_output_tokens", "usd_per_output_token"),
    ):
        value = getattr(profile, src, None)
        if value is not None:
            setattr(entry.cost, dst, value / 1e6)
    if profile.usd_per_request is not None:
        entry.cost.usd_per_request = profile.usd_per_request
    for src, dst in (("latency_p50_ms", "latency_ms_p50"), ("latency_p95_ms", "latency_ms_p95")):
        value = getattr(profile, src, None)
        if value is not None:
            setattr(entry.performance, dst, value)
    if profile.capabilities:
        del entry.capabilities[:]
        entry.capabilities.extend(
            common_pb2.Capability.Value(f"CAPABILITY_{c.upper()}") for c in profile.capabilities
        )
