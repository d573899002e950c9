"""API provider models from the maintained data file, listed only with a configured key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from modelyard.discovery import ApiProvidersSource, enabled_from_env
from modelyard.hosted_catalog import load_catalog
from modelyard_client.errors import CatalogFileError
from modelyard_client.v1 import common_pb2 as C

PROVIDERS = {
    "openai", "anthropic", "mistral", "gemini", "vertex",
    "bedrock", "cohere", "openrouter", "elevenlabs",
}  # fmt: skip


def test_data_file_is_valid_dated_and_covers_every_provider() -> None:
    catalog = load_catalog()
    assert set(catalog.providers) == PROVIDERS
    assert dt.date.fromisoformat(catalog.as_of) <= dt.date.today()
    for provider in catalog.providers.values():
        assert provider.entries, provider.name
        for entry in provider.entries:
            assert entry.id == f"{provider.name}/{entry.name}"
            assert entry.capabilities and entry.input_modalities and entry.output_modalities
            assert entry.metadata["as_of"] == catalog.as_of
            cost = entry.cost
            priced = cost.usd_per_input_token or cost.usd_per_character
            assert priced or cost.usd_per_audio_second or cost.usd_per_image, entry.id


def test_prices_are_per_token() -> None:
    entries = {e.id: e for p in load_catalog().providers.values() for e in p.entries}
    mini = entries["openai/gpt-4o-mini"]
    assert mini.cost.usd_per_input_token == pytest.approx(0.15e-6)
    assert mini.cost.usd_per_output_token == pytest.approx(0.60e-6)
    assert mini.context_window == 128000
    tts = entries["elevenlabs/eleven_flash_v2_5"]
    assert tts.metadata["input_unit"] == "character"
    assert tts.cost.usd_per_character == pytest.approx(0.05e-3)
    assert tts.cost.usd_per_input_token == 0
    assert list(tts.capabilities) == [C.CAPABILITY_TEXT_TO_SPEECH, C.CAPABILITY_STREAMING]
    stt = entries["elevenlabs/scribe_v1"]
    assert stt.cost.usd_per_audio_second == pytest.approx(0.22 / 3600)


async def test_only_providers_with_a_key_are_listed() -> None:
    snap = await ApiProvidersSource(
        {"anthropic": "sk-ant", "cohere": "", "mistral": "m"}
    ).discover()
    assert snap.source == "api" and snap.complete and not snap.errors
    assert {e.provider for e in snap.entries} == {"anthropic", "mistral"}
    assert "anthropic/claude-sonnet-4-5" in {e.id for e in snap.entries}

    nothing = await ApiProvidersSource({}).discover()
    assert nothing.entries == ()


async def test_an_unknown_provider_is_reported_not_fatal() -> None:
    snap = await ApiProvidersSource({"acme": "key", "openai": "sk"}).discover()
    assert {e.provider for e in snap.entries} == {"openai"}
    assert snap.errors and "'acme'" in snap.errors[0]


def test_enabled_from_env_uses_each_providers_key_variables() -> None:
    env = {"OPENAI_API_KEY": "sk", "CO_API_KEY": "co", "GEMINI_API_KEY": "", "PATH": "/bin"}
    assert enabled_from_env(env) == {"openai": "sk", "cohere": "co"}


def one_model(fields: str) -> str:
    return f"as_of: '2026-01-01'\nproviders: {{x: {{key_env: [K], models: [{{{fields}}}]}}}}"


GOOD = "name: m, capabilities: [chat], input: [text], output: [text]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("as_of: '2026-01-01'\nproviders: {x: {key_env: [K], models: [], extra: 1}}",
         "providers.x.extra: unknown key"),
        (one_model("name: m"), "providers.x.models[0].capabilities: required"),
        (one_model(GOOD.replace("[chat]", "[telepathy]")),
         "providers.x.models[0].capabilities: unknown name 'telepathy'"),
        (one_model(GOOD + ", usd_per_mtok_in: -1"),
         "providers.x.models[0].usd_per_mtok_in: must be a number >= 0"),
        (one_model(GOOD + ", context_window: 1.5"),
         "providers.x.models[0].context_window: must be a whole number"),
        ("providers: {}", ".as_of: required"),
    ],
)  # fmt: skip
def test_a_broken_data_file_names_the_key_path(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(CatalogFileError) as err:
        load_catalog(path)
    assert message in str(err.value)
