"""Tools on the bedrock engine: ``toolConfig`` and ``toolUse``/``toolResult`` blocks sent
(signed), a ConverseStream call's ``toolUse`` start and input fragments gathered whole by
block index, stopReason ``tool_use`` as FINISH_REASON_TOOL_CALLS, cache reads counted as
cached input, and all of it through a real gateway stack with the catalog's cached-input
price (fake: tests/support/fake_bedrock.py, after the Bedrock Runtime API reference,
API version 2023-09-30, read 2026-12-01)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.bedrock.calls import CLAUDE, CLAUDE_ID, NOVA, NOVA_ID, collect
from conftest import StackFactory
from support.fake_bedrock import (
    REGION,
    FakeBedrock,
    block_stop,
    converse_output,
    delta,
    message_start,
    message_stop,
    metadata,
    tool_use_delta,
    tool_use_start,
)

from modelyard.backends.bedrock.engine import BedrockEngine
from modelyard.config import BedrockBackend, parse_config
from modelyard_client.errors import InvalidRequest, ProviderProtocolError
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
# global.anthropic.claude-sonnet-4-5 in api_models.yaml, USD per token.
USD_IN, USD_CACHED, USD_OUT = 3.0 / 1e6, 0.30 / 1e6, 15.0 / 1e6


def _tools(choice: str = "") -> common_pb2.GenerationParams:
    params = common_pb2.GenerationParams(max_tokens=64, tool_choice=choice)
    params.tools.add(
        name="get_weather",
        description="The weather in a city.",
        parameters_json=json.dumps(WEATHER_SCHEMA),
    )
    params.tools.add(name="now")
    return params


def _ask(text: str = "Weather in Oslo?") -> common_pb2.Input:
    model_input = common_pb2.Input()
    model_input.chat.messages.add(role="user", content=text)
    return model_input


def _tool_turns() -> common_pb2.Input:
    model_input = _ask()
    said = model_input.chat.messages.add(role="assistant", content="Checking.")
    said.tool_calls.add(id="tooluse_1", name="get_weather", arguments_json='{"city": "Oslo"}')
    said.tool_calls.add(id="tooluse_2", name="now")
    model_input.chat.messages.add(role="tool", tool_call_id="tooluse_1", content='{"temp_c": 3}')
    model_input.chat.messages.add(role="tool", tool_call_id="tooluse_2", content="09:30")
    return model_input


def _called(cache_read: int | None = None) -> list[bytes]:
    """Text, then two calls whose input JSON comes in fragments split mid-token."""
    return [
        message_start(),
        delta("Let me look."),
        block_stop(0),
        tool_use_start(1, "tooluse_A", "get_weather"),
        tool_use_delta(1, '{"ci'),
        tool_use_delta(1, 'ty": "Os'),
        tool_use_delta(1, 'lo"}'),
        block_stop(1),
        tool_use_start(2, "tooluse_B", "now"),
        block_stop(2),  # no input at all: no arguments
        message_stop("tool_use"),
        metadata(40, 12, cache_read),
    ]


SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "inputSchema": {"json": WEATHER_SCHEMA},
    }
}
NOW_SPEC = {
    "toolSpec": {"name": "now", "inputSchema": {"json": {"type": "object", "properties": {}}}}
}


@pytest.mark.parametrize(
    ("choice", "tool_choice"),
    [
        ("", None),
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ("get_weather", {"tool": {"name": "get_weather"}}),
    ],
)
async def test_tools_are_the_tool_config_with_the_choice(
    engine: BedrockEngine, bedrock: FakeBedrock, choice: str, tool_choice: object
) -> None:
    await collect(engine, _ask(), _tools(choice), CLAUDE_ID)
    [received] = bedrock.requests
    expected: dict[str, object] = {"tools": [SPEC, NOW_SPEC]}
    if tool_choice is not None:
        expected["toolChoice"] = tool_choice
    assert received.body["toolConfig"] == expected


async def test_tool_choice_none_leaves_the_tools_out(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    await collect(engine, _ask(), _tools("none"), CLAUDE_ID)
    assert "toolConfig" not in bedrock.requests[0].body


async def test_tool_turns_are_tool_use_and_tool_result_blocks(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    pieces = await collect(engine, _tool_turns(), _tools(), CLAUDE_ID)
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    [received] = bedrock.requests  # signed, and its blocks accepted by the fake's checks
    assert received.body["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"text": "Checking."},
                {
                    "toolUse": {
                        "toolUseId": "tooluse_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    }
                },
                {"toolUse": {"toolUseId": "tooluse_2", "name": "now", "input": {}}},
            ],
        },
        {
            "role": "user",  # both results in one user message
            "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": '{"temp_c": 3}'}]}},
                {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "09:30"}]}},
            ],
        },
    ]


@pytest.mark.parametrize("model_id", [NOVA_ID, CLAUDE_ID])
async def test_a_streamed_call_is_gathered_whole_by_block_index(
    engine: BedrockEngine, bedrock: FakeBedrock, model_id: str
) -> None:
    bedrock.answer(_called())
    pieces = await collect(engine, _ask(), _tools(), model_id)

    assert "".join(p.text for p in pieces) == "Let me look."
    assert all(not p.tool_calls for p in pieces[:-1])
    last = pieces[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments_json) for c in last.tool_calls] == [
        ("tooluse_A", "get_weather", '{"city": "Oslo"}'),
        ("tooluse_B", "now", "{}"),
    ]
    assert (last.input_tokens, last.cached_input_tokens, last.output_tokens) == (40, 0, 12)


async def test_cache_reads_and_writes_count_in_the_input_and_reads_as_cached(
    engine: BedrockEngine, bedrock: FakeBedrock
) -> None:
    bedrock.answer(
        [message_start(), delta("ok"), block_stop(), message_stop(), metadata(30, 2, 1500, 200)]
    )
    pieces = await collect(engine, _ask(), _tools(), CLAUDE_ID)
    last = pieces[-1]
    assert (last.input_tokens, last.cached_input_tokens, last.output_tokens) == (1730, 1500, 2)


async def test_a_unary_converse_answer_carries_its_tool_use_blocks(bedrock: FakeBedrock) -> None:
    engine = BedrockEngine(
        "bedrock",
        BedrockBackend(
            region=REGION, endpoint=bedrock.url, models=(NOVA,), non_streaming_models=(NOVA,)
        ),
    )
    await engine.start()
    try:
        bedrock.answer_unary(
            converse_output(
                "",
                "tool_use",
                9,
                5,
                [{"toolUseId": "tooluse_U", "name": "get_weather", "input": {"city": "Oslo"}}],
            )
        )
        [piece] = await collect(engine, _ask(), _tools(), NOVA_ID)
    finally:
        await engine.close()
    assert piece.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, json.loads(c.arguments_json)) for c in piece.tool_calls] == [
        ("tooluse_U", "get_weather", {"city": "Oslo"})
    ]
    assert bedrock.requests[0].raw_path.endswith("/converse")


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([tool_use_delta(3, '{"a": 1}')], "no toolUse started"),
        ([tool_use_start(1, "", "now")], "start.toolUse.toolUseId is ''"),
        (
            [tool_use_start(1, "t", "now"), tool_use_delta(1, '{"a": '), block_stop(1)],
            "the toolUse input of contentBlockIndex 1 is no JSON object",
        ),
    ],
)
async def test_a_malformed_tool_use_stream_is_a_protocol_error(
    engine: BedrockEngine, bedrock: FakeBedrock, messages: list[bytes], problem: str
) -> None:
    bedrock.answer([message_start(), *messages, message_stop("tool_use"), metadata(1, 1)])
    with pytest.raises(ProviderProtocolError, match=problem):
        await collect(engine, _ask(), _tools(), CLAUDE_ID)


def _turns(arguments_json: str = "{}", result_id: str = "tooluse_1") -> common_pb2.Input:
    model_input = _ask()
    said = model_input.chat.messages.add(role="assistant")
    said.tool_calls.add(id="tooluse_1", name="get_weather", arguments_json=arguments_json)
    model_input.chat.messages.add(role="tool", tool_call_id=result_id, content="3")
    return model_input


@pytest.mark.parametrize(
    ("model_input", "params", "field", "says"),
    [
        (_turns(), _tools("none"), "params.tool_choice", "has no tool choice 'none'"),
        (_turns(), common_pb2.GenerationParams(), "params.tools", "params.tools is empty"),
        (
            _turns(result_id="tooluse_9"),
            _tools(),
            "input.chat.messages[2].tool_call_id",
            "'tooluse_9' answers no call",
        ),
        (
            _turns('"Oslo"'),
            _tools(),
            "input.chat.messages[1].tool_calls[0].arguments_json",
            "must be a JSON object",
        ),
    ],
)
async def test_tool_requests_converse_cannot_take_are_refused_before_any_call(
    engine: BedrockEngine,
    bedrock: FakeBedrock,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    field: str,
    says: str,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, params, CLAUDE_ID)
    assert caught.value.field == field
    assert says in caught.value.message
    assert bedrock.requests == [] and bedrock.refused == []


# ---- through a real gateway stack --------------------------------------------------


@pytest.fixture
async def gateway(
    bedrock: FakeBedrock, make_stack: StackFactory
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
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
    stack = await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request(model_input: common_pb2.Input, choice: str = "auto") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=CLAUDE_ID, input=model_input)
    request.params.CopyFrom(_tools(choice))
    return request


async def test_generate_stream_returns_the_calls_with_tool_calls_and_prices_cache_reads(
    bedrock: FakeBedrock, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    bedrock.answer(_called(cache_read=1000))
    chunks = [c async for c in gateway.GenerateStream(_request(_ask()), timeout=10)]

    assert "".join(c.text for c in chunks) == "Let me look."
    last = chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments_json) for c in last.tool_calls] == [
        ("tooluse_A", "get_weather", '{"city": "Oslo"}'),
        ("tooluse_B", "now", "{}"),
    ]
    usage = last.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (1040, 1000, 12)
    assert usage.cost_usd == pytest.approx(40 * USD_IN + 1000 * USD_CACHED + 12 * USD_OUT)
    assert bedrock.requests[0].body["toolConfig"]["toolChoice"] == {"auto": {}}


async def test_a_tool_turn_round_trips_through_generate(
    bedrock: FakeBedrock, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    bedrock.answer(_called())
    first = await gateway.Generate(_request(_ask(), "required"), timeout=10)
    assert first.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert first.text == "Let me look."
    assert [c.id for c in first.tool_calls] == ["tooluse_A", "tooluse_B"]

    follow_up = _ask()
    said = follow_up.chat.messages.add(role="assistant", content=first.text)
    said.tool_calls.extend(first.tool_calls)
    for call, result in zip(first.tool_calls, ('{"temp_c": 3}', "09:30"), strict=True):
        follow_up.chat.messages.add(role="tool", tool_call_id=call.id, content=result)
    bedrock.answer(
        [message_start(), delta("3 degrees."), block_stop(), message_stop(), metadata(60, 3)]
    )
    second = await gateway.Generate(_request(follow_up), timeout=10)

    assert second.text == "3 degrees."
    assert second.finish_reason == common_pb2.FINISH_REASON_STOP
    sent = bedrock.requests[1].body["messages"]
    assert [b.get("toolUse", {}).get("toolUseId") for b in sent[1]["content"]] == [
        None,
        "tooluse_A",
        "tooluse_B",
    ]
    assert [b["toolResult"]["toolUseId"] for b in sent[2]["content"]] == ["tooluse_A", "tooluse_B"]


async def test_tool_choice_none_with_tool_turns_is_refused_before_bedrock_is_called(
    bedrock: FakeBedrock, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(_turns(), "none"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "params.tool_choice is not supported" in (caught.value.details() or "")
    assert bedrock.requests == []


async def test_with_drop_unsupported_params_the_none_choice_is_left_out_and_named(
    bedrock: FakeBedrock, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    request = _request(_turns(), "none")
    request.params.drop_unsupported_params = True
    bedrock.answer([message_start(), delta("3."), block_stop(), message_stop(), metadata(20, 1)])
    chunks = [c async for c in gateway.GenerateStream(request, timeout=10)]

    assert "".join(c.text for c in chunks) == "3."
    assert list(chunks[-1].dropped_params) == ["tool_choice"]
    config = bedrock.requests[0].body["toolConfig"]
    assert config == {"tools": [SPEC, NOW_SPEC]}  # the tools, and no choice
