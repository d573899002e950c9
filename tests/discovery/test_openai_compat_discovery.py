"""/v1/models discovery against a fake OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from conftest import free_port

from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.discovery import OpenAICompatSource
from modelyard_client.errors import BackendUnavailable
from modelyard_client.v1 import common_pb2 as C

OPENAI_STYLE = [
    {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
    {
        "id": "text-embedding-3-small",
        "object": "model",
        "created": 1705948997,
        "owned_by": "system",
    },
]
OPENROUTER_STYLE = {
    "id": "google/gemini-2.5-flash",
    "name": "Google: Gemini 2.5 Flash",
    "created": 1750172488,
    "context_length": 1048576,
    "architecture": {"input_modalities": ["text", "image", "file"], "output_modalities": ["text"]},
    "pricing": {
        "prompt": "0.0000003",
        "completion": "0.0000025",
        "request": "0",
        "image": "0.001238",
    },
}
VLLM_STYLE = {"id": "Qwen/Qwen3-8B", "object": "model", "owned_by": "vllm", "max_model_len": 32768}


@dataclass
class FakeModels:
    data: list[Any] = field(default_factory=lambda: list(OPENAI_STYLE))
    status: int = 200
    auth: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _models(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        if self.status != 200:
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=self.status)
        return web.json_response({"object": "list", "data": self.data})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/v1"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[FakeModels]:
    fake = FakeModels()
    await fake.start()
    yield fake
    await fake.stop()


async def test_lists_models_with_the_backend_ids_and_sends_the_key(server: FakeModels) -> None:
    source = OpenAICompatSource(ProviderEndpoint("custom", server.url, api_key="sk-test"))
    snap = await source.discover()

    assert snap.source == "openai_compat:custom" and snap.complete and not snap.errors
    assert server.auth == ["Bearer sk-test"]
    chat, embed = snap.entries
    assert (chat.id, chat.name, chat.provider) == ("custom/gpt-4o-mini", "gpt-4o-mini", "custom")
    assert list(chat.capabilities) == [C.CAPABILITY_CHAT, C.CAPABILITY_STREAMING]
    assert chat.metadata["owned_by"] == "system"
    assert chat.metadata["base_url"] == server.url
    assert list(embed.capabilities) == [C.CAPABILITY_EMBEDDING]
    assert list(embed.output_modalities) == [C.MODALITY_TENSOR]


async def test_reads_context_pricing_and_modalities_when_the_server_gives_them(
    server: FakeModels,
) -> None:
    server.data = [OPENROUTER_STYLE, VLLM_STYLE, {"object": "model"}]
    snap = await OpenAICompatSource(ProviderEndpoint("openrouter", server.url)).discover()

    gemini, qwen = snap.entries
    assert gemini.id == "openrouter/google/gemini-2.5-flash"
    assert gemini.context_window == 1048576
    assert gemini.cost.usd_per_input_token == pytest.approx(3e-7)
    assert gemini.cost.usd_per_output_token == pytest.approx(2.5e-6)
    assert gemini.cost.usd_per_image == pytest.approx(0.001238)
    assert list(gemini.input_modalities) == [C.MODALITY_TEXT, C.MODALITY_IMAGE]
    assert C.CAPABILITY_VISION in gemini.capabilities
    assert qwen.context_window == 32768
    assert snap.errors == ("openai_compat:openrouter: data[2] has no model id; skipped",)


async def test_rejected_key_is_backend_unavailable_with_the_upstream_message(
    server: FakeModels,
) -> None:
    server.status = 401
    with pytest.raises(BackendUnavailable) as err:
        await OpenAICompatSource(ProviderEndpoint("custom", server.url)).discover()
    assert "openai_compat:custom" in err.value.message
    assert "HTTP 401" in err.value.message and "Incorrect API key" in err.value.message


async def test_unreachable_endpoint_is_backend_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BackendUnavailable) as err:
        await OpenAICompatSource(ProviderEndpoint("custom", url)).discover()
    assert f"GET {url}/models failed" in err.value.message
