"""OpenAI-compatible providers known by name, enabled by their keys in the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProviderEndpoint:
    """One OpenAI-compatible upstream.

    `models` empty means "ask the upstream's /models at start".
    """

    name: str
    base_url: str  # up to and including /v1
    api_key: str = ""
    models: tuple[str, ...] = ()
    timeout_s: float = 120.0
    extra_headers: dict[str, str] = field(default_factory=dict)


# (provider name, key variable, base URL)
_KNOWN = (
    ("openai", "OPENAI_API_KEY", "https://api.openai.com/v1"),
    ("mistral", "MISTRAL_API_KEY", "https://api.mistral.ai/v1"),
    ("openrouter", "OPENROUTER_API_KEY", "https://openrouter.ai/api/v1"),
)


def providers_from_env(env: dict[str, str] | None = None) -> list[ProviderEndpoint]:
    """Providers whose key is set, plus ``CUSTOM_AI_PROVIDER_URL`` (key optional)."""
    env = dict(os.environ) if env is None else env
    found = [
        ProviderEndpoint(name, base, api_key=env[key]) for name, key, base in _KNOWN if env.get(key)
    ]
    custom = env.get("CUSTOM_AI_PROVIDER_URL", "").strip()
    if custom:
        found.append(
            ProviderEndpoint("custom", normalise_base_url(custom), env.get("CUSTOM_AI_API_KEY", ""))
        )
    return found


def normalise_base_url(url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both become ``.../v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"
