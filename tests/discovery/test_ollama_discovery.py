"""Ollama discovery through the real `ollama` client against a fake daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import free_port
from support.fake_ollama import FakeOllama

from modelyard.discovery import OllamaSource
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2 as C


@pytest.fixture
async def daemon() -> AsyncIterator[FakeOllama]:
    fake = FakeOllama()
    await fake.start()
    yield fake
    await fake.stop()


def by_id(entries: tuple[C.ModelEntry, ...]) -> dict[str, C.ModelEntry]:
    return {e.id: e for e in entries}


async def test_lists_every_model_with_details_capabilities_and_load_state(
    daemon: FakeOllama,
) -> None:
    snap = await OllamaSource(daemon.url).discover()

    assert snap.source == "ollama"
    assert snap.complete and snap.errors == ()
    models = by_id(snap.entries)
    assert sorted(models) == [
        "ollama/gemma3:270m",
        "ollama/llava:7b",
        "ollama/nomic-embed-text:latest",
        "ollama/qwen3:8b",
    ]
    assert daemon.shows == ["gemma3:270m", "llava:7b", "nomic-embed-text:latest", "qwen3:8b"]

    gemma = models["ollama/gemma3:270m"]
    assert (gemma.name, gemma.provider, gemma.version) == ("gemma3:270m", "ollama", "e7d36fb2c3b3")
    assert gemma.context_window == 32768  # model_info["gemma3.context_length"]
    assert list(gemma.capabilities) == [
        C.CAPABILITY_TEXT_GENERATION,
        C.CAPABILITY_CHAT,
        C.CAPABILITY_STREAMING,
        C.CAPABILITY_JSON_OUTPUT,
    ]
    assert list(gemma.input_modalities) == [C.MODALITY_TEXT]
    assert list(gemma.output_modalities) == [C.MODALITY_TEXT]
    assert gemma.resources.disk_bytes == 291_554_930
    assert gemma.resources.memory_bytes == 391_554_930  # /api/ps size of the loaded model
    meta = gemma.metadata
    assert meta["loaded"] == "true"
    assert meta["size_vram"] == "291554930"
    assert meta["loaded_context_length"] == "4096"
    assert meta["expires_at"].startswith("2025-10-17T16:47:07")
    assert (meta["family"], meta["parameter_size"], meta["quantization"]) == (
        "gemma3",
        "268.10M",
        "Q8_0",
    )
    assert meta["host"] == daemon.url
    assert "deployments" not in str(gemma.ListFields())

    llava = models["ollama/llava:7b"]
    assert C.CAPABILITY_VISION in llava.capabilities
    assert list(llava.input_modalities) == [C.MODALITY_TEXT, C.MODALITY_IMAGE]
    assert llava.metadata["loaded"] == "false"
    assert llava.resources.memory_bytes == llava.resources.disk_bytes

    embed = models["ollama/nomic-embed-text:latest"]
    assert list(embed.capabilities) == [C.CAPABILITY_EMBEDDING]
    assert list(embed.output_modalities) == [C.MODALITY_TENSOR]
    assert embed.context_window == 2048

    qwen = models["ollama/qwen3:8b"]
    assert {C.CAPABILITY_TOOLS, C.CAPABILITY_REASONING} <= set(qwen.capabilities)
    assert qwen.metadata["num_ctx"] == "8192"
    assert qwen.metadata["capabilities"] == "completion,tools,thinking"


async def test_daemon_without_capabilities_field_counts_as_completion(
    daemon: FakeOllama,
) -> None:
    daemon.models[1].capabilities = None
    snap = await OllamaSource(daemon.url).discover()
    llava = by_id(snap.entries)["ollama/llava:7b"]
    assert C.CAPABILITY_CHAT in llava.capabilities
    assert llava.metadata["capabilities_reported"] == "false"


async def test_one_model_that_show_rejects_is_named_and_the_rest_listed(
    daemon: FakeOllama,
) -> None:
    daemon.show_errors["llava:7b"] = (500, "unable to load model blob")
    snap = await OllamaSource(daemon.url).discover()

    assert snap.complete
    assert "ollama/llava:7b" not in by_id(snap.entries)
    assert len(snap.entries) == 3
    [error] = snap.errors
    assert "'llava:7b'" in error and "unable to load model blob" in error


@pytest.mark.parametrize(
    ("answered", "described", "failed_at"),
    [
        (2, ["ollama/gemma3:270m", "ollama/llava:7b"], "nomic-embed-text:latest"),
        (0, [], "gemma3:270m"),
    ],
)
async def test_daemon_that_stops_answering_mid_discovery_gives_an_incomplete_snapshot(
    daemon: FakeOllama, answered: int, described: list[str], failed_at: str
) -> None:
    daemon.answer_shows = answered  # then every connection drops without an answer
    snap = await OllamaSource(daemon.url).discover()

    assert not snap.complete
    assert sorted(by_id(snap.entries)) == described
    [error] = snap.errors
    assert f"stopped answering at '{failed_at}'" in error
    assert f"{4 - answered} model(s) not described" in error
    assert daemon.shows == [*(m.removeprefix("ollama/") for m in described), failed_at]


async def test_stopped_daemon_is_backend_unavailable(daemon: FakeOllama) -> None:
    await daemon.stop()  # the URL now refuses connections
    with pytest.raises(BackendUnavailable) as err:
        await OllamaSource(daemon.url).discover()
    assert "Failed to connect to Ollama" in err.value.message


async def test_failed_ps_keeps_the_list_and_says_load_state_is_unknown(
    daemon: FakeOllama,
) -> None:
    daemon.ps_status = 500
    snap = await OllamaSource(daemon.url).discover()
    assert snap.complete and len(snap.entries) == 4
    assert "/api/ps failed" in snap.errors[0]
    assert all(e.metadata["loaded"] == "false" for e in snap.entries)


async def test_no_daemon_is_backend_unavailable_naming_ollama_and_the_cause() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendUnavailable) as err:
        await OllamaSource(url, timeout_s=2).discover()
    assert f"ollama at {url}" in err.value.message
    assert "/api/tags" in err.value.message
