"""Models that cannot stream: asked with Converse, their whole answer one piece."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from backends.bedrock.calls import NOVA, NOVA_ID, collect
from support.fake_bedrock import REGION, FakeBedrock, converse_output

from modelyard.backends.bedrock.engine import BedrockEngine
from modelyard.backends.engine import Piece
from modelyard.config import BedrockBackend, parse_config
from modelyard_client.errors import ConfigError, ContentRejected, ProviderProtocolError, RateLimited
from modelyard_client.v1 import common_pb2


@pytest.fixture
async def unary(bedrock: FakeBedrock) -> AsyncIterator[BedrockEngine]:
    engine = BedrockEngine(
        "bedrock",
        BedrockBackend(
            region=REGION, endpoint=bedrock.url, models=(NOVA,), non_streaming_models=(NOVA,)
        ),
    )
    await engine.start()
    yield engine
    await engine.close()


async def test_a_non_streaming_model_is_asked_with_converse_signed(
    unary: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer_unary(converse_output("The Rhine.", "max_tokens", 12, 3))
    pieces = await collect(unary, params=common_pb2.GenerationParams(max_tokens=3))

    assert pieces == [Piece("The Rhine.", common_pb2.FINISH_REASON_LENGTH, 12, 3)]
    [received] = bedrock.requests
    assert received.raw_path == "/model/amazon.nova-lite-v1%3A0/converse"
    assert received.headers["Accept"] == "application/json"
    assert received.body["inferenceConfig"] == {"maxTokens": 3}
    assert bedrock.refused == []


async def test_its_text_blocks_are_joined(unary: BedrockEngine, bedrock: FakeBedrock) -> None:
    answer = converse_output("One")
    answer["output"]["message"]["content"].append({"text": ", two"})
    bedrock.answer_unary(answer)
    assert [p.text for p in await collect(unary)] == ["One, two"]


async def test_its_errors_map_as_the_streams_do(unary: BedrockEngine, bedrock: FakeBedrock) -> None:
    bedrock.fail(429, "ThrottlingException", "Too many requests.", {"Retry-After": "3"})
    with pytest.raises(RateLimited) as caught:
        await collect(unary)
    assert caught.value.retry_after_s == 3.0


async def test_a_guardrail_stop_is_content_rejected(
    unary: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer_unary(converse_output("Sorry.", "guardrail_intervened"))
    with pytest.raises(ContentRejected):
        await collect(unary)


async def test_an_answer_without_usage_is_a_protocol_error(
    unary: BedrockEngine, bedrock: FakeBedrock
) -> None:
    answer = converse_output("Hi")
    del answer["usage"]
    bedrock.answer_unary(answer)
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(unary)
    assert "no usage" in caught.value.message


async def test_other_models_still_stream(bedrock: FakeBedrock) -> None:
    engine = BedrockEngine(
        "bedrock",
        BedrockBackend(region=REGION, endpoint=bedrock.url, non_streaming_models=("other.m",)),
    )
    await engine.start()
    try:
        await collect(engine, model_id=NOVA_ID)
    finally:
        await engine.close()
    assert bedrock.requests[0].raw_path.endswith("/converse-stream")


def test_a_non_streaming_model_must_be_one_of_the_models() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            """
model_system:
  backends:
    bedrock:
      region: us-east-1
      models: [amazon.nova-lite-v1:0]
      non_streaming_models: [amazon.nova-lyte-v1:0]
"""
        )
    assert "backends.bedrock.non_streaming_models[0]" in str(caught.value)
