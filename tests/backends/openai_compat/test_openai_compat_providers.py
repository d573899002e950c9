"""Which OpenAI-compatible providers the environment enables, and their base URLs."""

from __future__ import annotations

import pytest

from modelyard.assembly.kinds import OPENAI_WIRE_HOSTS, provider_endpoint
from modelyard.backends.openai_compat.providers import ProviderEndpoint, normalise_base_url
from modelyard.config import ConfigError, default_config


def providers_from_env(env: dict[str, str] | None = None) -> list[ProviderEndpoint]:
    """The OpenAI-wire upstreams the built-in default enables from `env` (None: os.environ)."""
    wire = {"openai_compat", *OPENAI_WIRE_HOSTS}
    backends = default_config(env).active_backends()
    return [provider_endpoint(n, b) for n, b in backends.items() if b.kind in wire]


_ALL_KEYS = (
    "OPENAI_API_KEY",
    "MISTRAL_API_KEY",
    "OPENROUTER_API_KEY",
    "CUSTOM_AI_PROVIDER_URL",
    "CUSTOM_AI_API_KEY",
)


def test_no_keys_no_providers() -> None:
    assert providers_from_env({}) == []
    assert providers_from_env({"UNRELATED": "x"}) == []


@pytest.mark.parametrize(
    ("key", "name", "base_url"),
    [
        ("OPENAI_API_KEY", "openai", "https://api.openai.com/v1"),
        ("MISTRAL_API_KEY", "mistral", "https://api.mistral.ai/v1"),
        ("OPENROUTER_API_KEY", "openrouter", "https://openrouter.ai/api/v1"),
    ],
)
def test_a_known_provider_is_enabled_by_its_key(key: str, name: str, base_url: str) -> None:
    [provider] = providers_from_env({key: "sk-secret"})
    assert provider == ProviderEndpoint(name, base_url, api_key="sk-secret", dialect=name)
    assert provider.models == ()  # ask the upstream's /models at start
    assert provider.timeout_s == 120.0
    assert provider.extra_headers == {}


def test_an_empty_key_enables_nothing() -> None:
    assert providers_from_env({"OPENAI_API_KEY": "", "CUSTOM_AI_PROVIDER_URL": ""}) == []


def test_a_malformed_custom_url_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"backends\.custom\.endpoint"):
        providers_from_env({"CUSTOM_AI_PROVIDER_URL": "   "})


def test_custom_provider_needs_no_key_and_its_url_is_normalised() -> None:
    [custom] = providers_from_env({"CUSTOM_AI_PROVIDER_URL": "http://127.0.0.1:8080/"})
    assert custom == ProviderEndpoint(
        "custom", "http://127.0.0.1:8080/v1", api_key="", dialect="openai_compat"
    )


def test_custom_provider_takes_its_own_key() -> None:
    [custom] = providers_from_env(
        {"CUSTOM_AI_PROVIDER_URL": "http://h:1/v1", "CUSTOM_AI_API_KEY": "local-key"}
    )
    assert (custom.name, custom.base_url, custom.api_key) == (
        "custom",
        "http://h:1/v1",
        "local-key",
    )


def test_custom_key_alone_enables_nothing() -> None:
    assert providers_from_env({"CUSTOM_AI_API_KEY": "local-key"}) == []


def test_every_provider_at_once_in_a_stable_order_each_with_its_own_key() -> None:
    env = {
        "CUSTOM_AI_PROVIDER_URL": "http://h:1",
        "OPENROUTER_API_KEY": "k-or",
        "OPENAI_API_KEY": "k-oa",
        "MISTRAL_API_KEY": "k-mi",
    }
    before = dict(env)
    found = providers_from_env(env)
    assert [(p.name, p.api_key) for p in found] == [
        ("openai", "k-oa"),
        ("mistral", "k-mi"),
        ("openrouter", "k-or"),
        ("custom", ""),
    ]
    assert env == before  # the mapping passed in is only read


def test_without_a_mapping_the_process_environment_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in _ALL_KEYS:
        monkeypatch.delenv(key, raising=False)
    assert providers_from_env() == []
    monkeypatch.setenv("MISTRAL_API_KEY", "from-env")
    monkeypatch.setenv("CUSTOM_AI_PROVIDER_URL", "http://localhost:11434")
    assert [(p.name, p.base_url, p.api_key) for p in providers_from_env()] == [
        ("mistral", "https://api.mistral.ai/v1", "from-env"),
        ("custom", "http://localhost:11434/v1", ""),
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://host:8000", "http://host:8000/v1"),
        ("http://host:8000/", "http://host:8000/v1"),
        ("http://host:8000/v1", "http://host:8000/v1"),
        ("http://host:8000/v1/", "http://host:8000/v1"),
        ("http://host:8000/v1//", "http://host:8000/v1"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1"),
        ("http://host/api", "http://host/api/v1"),
    ],
)
def test_normalise_base_url(url: str, expected: str) -> None:
    assert normalise_base_url(url) == expected
    assert normalise_base_url(expected) == expected  # idempotent


def test_the_dialect_is_the_entrys_kind_whatever_its_name() -> None:
    from modelyard.assembly.kinds import provider_endpoint
    from modelyard.backends.openai_compat.params import dialect_of
    from modelyard.config import parse_config

    config = parse_config(
        "model_system:\n  backends:\n"
        "    openai-eu: {kind: openai, api_key: '${EU}'}\n"
        "    openai: {kind: openai_compat, endpoint: 'http://127.0.0.1:9/v1'}\n",
        env={"EU": "sk-1"},
    )
    eu = provider_endpoint("openai-eu", config.backends["openai-eu"])
    local = provider_endpoint("openai", config.backends["openai"])
    assert (eu.dialect, local.dialect) == ("openai", "openai_compat")
    assert "top_k" in dialect_of(eu.dialect).unsupported  # OpenAI's API has no top_k
    assert "top_k" not in dialect_of(local.dialect).unsupported  # a generic server may
