"""A `cohere` backend in a real in-process stack, through GatewayService, against the fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from backends.cohere.calls import KEY, MODEL
from conftest import StackFactory
from support.fake_cohere import FakeCohere, message_end, stream_events

from modelyard.config import parse_config
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

ROLES = ("registry", "gateway", "backend-openai-compat")
# command-a-03-2025's prices in discovery/data/api_models.yaml: $2.50 / $10.00 per 1M tokens.
USD_IN, USD_OUT = 2.5e-6, 10e-6


@pytest.fixture
async def gateway(
    cohere: FakeCohere, make_stack: StackFactory
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    config = parse_config(
        f"""
model_system:
  backends:
    cohere:
      api_key: "${{COHERE_API_KEY}}"
      base_url: "{cohere.url}"
      models: [command-a-03-2025]
""",
        env={"COHERE_API_KEY": KEY},
    )
    stack = await make_stack(roles=ROLES, config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.chat.messages.add(role="system", content="Be terse.")
    request.input.chat.messages.add(role="user", content="Name a river.")
    request.params.max_tokens = 32
    return request


async def test_generate_stream_reaches_cohere_and_streams_its_answer_back(
    cohere: FakeCohere, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    cohere.answer(stream_events(["The ", "Rhine."], message_end(billed=(9, 2))))
    chunks = [c async for c in gateway.GenerateStream(_request(), timeout=10)]

    assert "".join(c.text for c in chunks) == "The Rhine."
    last = chunks[-1]
    assert last.model_id == MODEL
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (last.usage.input_tokens, last.usage.output_tokens) == (9, 2)
    assert last.usage.cost_usd == pytest.approx(9 * USD_IN + 2 * USD_OUT)  # the catalog's prices
    [body] = cohere.bodies
    assert body["model"] == "command-a-03-2025"
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Name a river."},
    ]
    assert cohere.headers[0]["Authorization"] == f"Bearer {KEY}"


async def test_generate_returns_the_whole_answer_with_usage(
    cohere: FakeCohere, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    cohere.answer(stream_events(["Hi", " there"], message_end("MAX_TOKENS", billed=(7, 2))))
    response = await gateway.Generate(_request(), timeout=10)
    assert response.text == "Hi there"
    assert response.model_id == MODEL
    assert response.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 2)
    assert response.usage.cost_usd == pytest.approx(7 * USD_IN + 2 * USD_OUT)


async def test_a_cohere_refusal_reaches_the_caller_as_invalid_argument(
    cohere: FakeCohere, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    request = _request()
    request.params.top_k = 900
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "params.top_k: Cohere takes k from 0 to 500, not 900" in (caught.value.details() or "")
    assert cohere.bodies == []
