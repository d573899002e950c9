"""A `bedrock` backend in a real in-process stack, through GatewayService, against the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from backends.bedrock.calls import CLAUDE, CLAUDE_ID
from conftest import StackFactory
from support.fake_bedrock import REGION, FakeBedrock, text_stream

from modelyard.config import parse_config
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

ROLES = ("registry", "gateway", "backend-openai-compat")


@pytest.fixture
async def stack_address(bedrock: FakeBedrock, make_stack: StackFactory) -> str:
    config = parse_config(
        f"""
model_system:
  backends:
    bedrock:
      region: {REGION}
      endpoint: "{bedrock.url}"
      models: ["{CLAUDE}"]
"""
    )
    stack = await make_stack(roles=ROLES, config=config)
    return stack.address


@pytest.fixture
async def gateway(stack_address: str) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    async with grpc.aio.insecure_channel(stack_address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=CLAUDE_ID)
    request.input.chat.messages.add(role="system", content="Be terse.")
    request.input.chat.messages.add(role="user", content="Name a river.")
    request.params.max_tokens = 32
    return request


async def test_generate_stream_reaches_bedrock_signed_and_streams_its_answer_back(
    bedrock: FakeBedrock, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    bedrock.answer(text_stream(["The ", "Rhine."], "end_turn", 9, 2))
    chunks = [c async for c in gateway.GenerateStream(_request(), timeout=10)]

    assert "".join(c.text for c in chunks) == "The Rhine."
    last = chunks[-1]
    assert last.model_id == CLAUDE_ID
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (last.usage.input_tokens, last.usage.output_tokens) == (9, 2)
    [received] = bedrock.requests
    assert received.model_id == CLAUDE
    assert received.body["system"] == [{"text": "Be terse."}]
    assert received.body["messages"] == [{"role": "user", "content": [{"text": "Name a river."}]}]
    assert received.body["inferenceConfig"] == {"maxTokens": 32}
    assert bedrock.refused == []  # the fake checked the SigV4 signature


async def test_generate_returns_the_whole_answer_priced_from_the_catalog(
    bedrock: FakeBedrock, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    bedrock.answer(text_stream(["Hi", " there"], "max_tokens", 1000, 200))
    response = await gateway.Generate(_request(), timeout=10)
    assert response.text == "Hi there"
    assert response.model_id == CLAUDE_ID
    assert response.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert (response.usage.input_tokens, response.usage.output_tokens) == (1000, 200)


async def test_the_registry_lists_the_model_with_its_catalog_prices(
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, stack_address: str
) -> None:
    async with grpc.aio.insecure_channel(stack_address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        listed = await registry.ListModels(registry_pb2.ListModelsRequest(provider="bedrock"))
    [entry] = listed.models
    assert entry.id == CLAUDE_ID
    assert [d.backend for d in entry.deployments] == ["bedrock"]
    # Claude Sonnet 4.5, global profile: $3 in, $15 out per million tokens.
    assert entry.cost.usd_per_input_token == pytest.approx(3e-6)
    assert entry.cost.usd_per_output_token == pytest.approx(15e-6)


async def test_bedrock_throttling_reaches_the_caller_as_resource_exhausted(
    bedrock: FakeBedrock, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    bedrock.fail(429, "ThrottlingException", "Too many requests, please wait.")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Too many requests, please wait." in (caught.value.details() or "")
