"""One listing of ``GET /v1/models``, read alike by the openai_compat engine and discovery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from modelyard.backends.openai_compat.engine import OpenAICompatEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.backends.openai_compat.upstream import list_models
from modelyard.discovery import OpenAICompatSource
from modelyard_client.errors import BackendUnavailable, ProviderAuthFailed, ProviderError

ANSWER = {"object": "list", "data": [{"id": "b-model"}, {"object": "model"}, {"id": "a-model"}]}


class Models:
    """A /v1/models endpoint answering `body` with `status`, noting each Authorization."""

    def __init__(self) -> None:
        self.body: Any = ANSWER
        self.status = 200
        self.auth: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization", ""))
        return web.json_response(self.body, status=self.status)


@pytest.fixture
async def models() -> AsyncIterator[Models]:
    endpoint = Models()
    app = web.Application()
    app.router.add_get("/v1/models", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    endpoint.url = f"http://{host}:{port}/v1"
    yield endpoint
    await runner.cleanup()


async def test_the_list_keeps_named_models_in_order_and_indexes_the_rest(models: Models) -> None:
    provider = ProviderEndpoint("custom", models.url, api_key="sk-test")
    async with aiohttp.ClientSession(headers=provider.headers()) as http:
        listed = await list_models(http, provider, aiohttp.ClientTimeout(total=5))
    assert [m["id"] for m in listed.models] == ["b-model", "a-model"]
    assert listed.unnamed == (1,)
    assert models.auth == ["Bearer sk-test"]


async def test_engine_and_discovery_list_the_same_models(models: Models) -> None:
    provider = ProviderEndpoint("custom", models.url, api_key="sk-test")
    engine = OpenAICompatEngine(provider)
    try:
        assert await engine.list_upstream_models() == ["a-model", "b-model"]
    finally:
        await engine.close()
    snapshot = await OpenAICompatSource(provider).discover()
    assert [e.name for e in snapshot.entries] == ["b-model", "a-model"]
    assert snapshot.errors == ("openai_compat:custom: data[1] has no model id; skipped",)
    assert models.auth == ["Bearer sk-test", "Bearer sk-test"]


async def test_a_refusal_means_the_same_to_engine_and_discovery(models: Models) -> None:
    models.status = 401
    models.body = {"error": {"message": "Incorrect API key provided"}}
    provider = ProviderEndpoint("custom", models.url)
    refusal = (
        "upstream 'custom' rejected this gateway's API key for the provider "
        "(HTTP 401; not the caller's credentials): Incorrect API key provided"
    )
    engine = OpenAICompatEngine(provider)
    try:
        with pytest.raises(ProviderAuthFailed) as by_engine:
            await engine.list_upstream_models()
    finally:
        await engine.close()
    assert by_engine.value.message == refusal
    with pytest.raises(BackendUnavailable) as by_discovery:
        await OpenAICompatSource(provider).discover()
    assert by_discovery.value.message == (
        f"openai_compat:custom: GET {models.url}/models failed: {refusal}"
    )


async def test_an_answer_that_is_not_a_model_list_is_a_provider_error(models: Models) -> None:
    models.body = {"data": "nothing"}
    provider = ProviderEndpoint("custom", models.url)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(ProviderError) as err:
            await list_models(http, provider, aiohttp.ClientTimeout(total=5))
    assert err.value.message == "upstream 'custom' did not answer a model list"
