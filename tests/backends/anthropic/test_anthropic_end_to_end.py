"""A backend of kind `anthropic` in a real in-process stack, called through the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import StackFactory
from support.fake_anthropic import API_KEY, FakeAnthropic

from modelyard.config import parse_config
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

ROLES = ("registry", "gateway", "backend-openai-compat")
MODEL = "claude/claude-haiku-4-5"
# claude-haiku-4-5's prices in discovery/data/api_models.yaml: $1 / $5 per 1M tokens.
USD_IN, USD_OUT = 1e-6, 5e-6


@pytest.fixture
async def channel(fake: FakeAnthropic, make_stack: StackFactory) -> AsyncIterator[grpc.aio.Channel]:
    config = parse_config(
        f"""
model_system:
  backends:
    claude:
      kind: anthropic
      api_key: ${{CLAUDE_KEY}}
      base_url: "{fake.base_url}"
      models: [claude-haiku-4-5]
""",
        env={"CLAUDE_KEY": API_KEY},
    )
    stack = await make_stack(roles=ROLES, config=config)
    async with grpc.aio.insecure_channel(stack.address) as opened:
        yield opened


def _request() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.chat.messages.add(role="system", content="Be brief.")
    request.input.chat.messages.add(role="user", content="Say hello")
    request.params.max_tokens = 20
    return request


async def test_the_configured_model_is_announced_with_its_deployment(
    channel: grpc.aio.Channel,
) -> None:
    registry = registry_pb2_grpc.RegistryServiceStub(channel)
    entry = await registry.GetModel(registry_pb2.GetModelRequest(id=MODEL))
    assert (entry.name, entry.provider) == ("claude-haiku-4-5", "claude")
    assert [d.backend for d in entry.deployments] == ["anthropic"]
    assert (entry.cost.usd_per_input_token, entry.cost.usd_per_output_token) == pytest.approx(
        (USD_IN, USD_OUT)
    )
    assert entry.context_window == 200_000  # the catalog's: the API was not asked for models


async def test_generate_stream_and_generate_through_the_gateway(
    fake: FakeAnthropic, channel: grpc.aio.Channel
) -> None:
    gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
    fake.reply("Hello", ", ", "world", input_tokens=12, output_tokens=3)
    chunks = [c async for c in gateway.GenerateStream(_request(), timeout=10)]
    assert "".join(c.text for c in chunks) == "Hello, world"
    assert chunks[0].model_id == MODEL
    last = chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (last.usage.input_tokens, last.usage.output_tokens) == (12, 3)
    # Priced from the engine's own announcement: this stack runs no discovery.
    assert last.usage.cost_usd == pytest.approx(12 * USD_IN + 3 * USD_OUT)

    response = await gateway.Generate(_request(), timeout=10)
    assert (response.text, response.model_id) == ("Hello, world", MODEL)
    assert response.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.usage.cost_usd == pytest.approx(12 * USD_IN + 3 * USD_OUT)

    assert len(fake.received) == 2
    sent = fake.received[0]
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.body["system"] == "Be brief."
    assert sent.body["model"] == "claude-haiku-4-5"
    assert sent.body["max_tokens"] == 20


async def test_an_overloaded_api_fails_the_call_as_unavailable(
    fake: FakeAnthropic, channel: grpc.aio.Channel
) -> None:
    gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
    fake.fail(529, "overloaded_error", "Overloaded")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "overloaded_error" in (caught.value.details() or "")


async def test_a_seed_is_refused_naming_the_provider_or_dropped_and_listed(
    fake: FakeAnthropic, channel: grpc.aio.Channel
) -> None:
    gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
    request = _request()
    request.params.seed = 7
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "params.seed is not supported by model 'claude/claude-haiku-4-5' (provider " in (
        caught.value.details() or ""
    )
    assert fake.received == []

    fake.reply("Hello", input_tokens=12, output_tokens=1)
    request.params.drop_unsupported_params = True
    response = await gateway.Generate(request, timeout=10)
    assert list(response.dropped_params) == ["seed"]
    assert "seed" not in fake.received[0].body
