"""Tools on the anthropic engine (backends/anthropic/tools.py): the definitions, the choice
and the tool turns sent as Anthropic's tool use reference says, a streamed ``tool_use``
block's ``input_json_delta`` fragments gathered into whole calls, cached input in the
usage and priced, and bad tool turns refused before any call.

The fake (support/fake_anthropic.py) streams tool calls as the streaming guide shows them
and refuses what the real API refuses (tool turns out of order, a schema that is no object).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.anthropic.anthropic_calls import chat_input, collect, params
from conftest import StackFactory
from support.fake_anthropic import API_KEY, FakeAnthropic, _sse, tool_use_events

from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard.config import parse_config
from modelyard_client.errors import InvalidRequest, ProviderProtocolError, error_from_rpc
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
}
ROLES = ("registry", "gateway", "backend-openai-compat")
MODEL = "claude/claude-haiku-4-5"
# claude-haiku-4-5 in api_models.yaml: USD 1 per million input tokens, 0.10 per million
# read from the cache, 5 per million out.
USD_IN, USD_CACHED, USD_OUT = 1.0e-6, 0.1e-6, 5.0e-6


def _tools(tool_choice: str = "") -> common_pb2.GenerationParams:
    generation = params(tool_choice=tool_choice)
    generation.tools.add(
        name="get_weather", description="The weather now", parameters_json=json.dumps(WEATHER)
    )
    generation.tools.add(name="now")  # no arguments
    return generation


def _round_trip() -> common_pb2.Input:
    """A question, the assistant's two calls (after a word of text), and both results."""
    model_input = chat_input(("user", "Weather in Paris, and the time?"))
    turn = model_input.chat.messages.add(role="assistant", content="Let me look.")
    turn.tool_calls.add(id="toolu_a", name="get_weather", arguments_json='{"city": "Paris"}')
    turn.tool_calls.add(id="toolu_b", name="now")
    model_input.chat.messages.add(role="tool", tool_call_id="toolu_a", content='{"celsius": 18}')
    model_input.chat.messages.add(role="tool", tool_call_id="toolu_b", content="09:30")
    return model_input


async def test_tools_and_each_choice_are_sent_as_the_reference_says(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    for choice, sent in [
        ("", None),
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ]:
        await collect(engine, chat_input(("user", "Weather?")), _tools(tool_choice=choice))
        body = fake.received[-1].body
        assert body["tools"] == [
            {"name": "get_weather", "description": "The weather now", "input_schema": WEATHER},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ]
        assert body.get("tool_choice") == sent


async def test_a_tool_round_trip_sends_tool_use_then_one_user_turn_of_results(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.reply("It is 18 C at 09:30.")
    pieces = await collect(engine, _round_trip(), _tools())
    assert "".join(p.text for p in pieces) == "It is 18 C at 09:30."
    assert fake.received[-1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris, and the time?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather",
                 "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": '{"celsius": 18}'},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "09:30"},
            ],
        },
    ]  # fmt: skip


async def test_calls_without_text_are_tool_use_blocks_only(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    model_input = chat_input(("user", "Time?"))
    model_input.chat.messages.add(role="assistant").tool_calls.add(id="toolu_c", name="now")
    model_input.chat.messages.add(role="tool", tool_call_id="toolu_c", content="")
    await collect(engine, model_input, _tools())
    _, assistant, results = fake.received[-1].body["messages"]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "toolu_c", "name": "now", "input": {}}
    ]
    assert results["content"] == [{"type": "tool_result", "tool_use_id": "toolu_c"}]


async def test_streamed_fragments_cut_anywhere_become_whole_calls_on_the_last_piece(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream(
        tool_use_events(
            [
                (
                    "toolu_a",
                    "get_weather",
                    ['{"ci', 'ty": "Pa', "ris\\u00e9", '", "unit"', ': "c"}'],
                ),
                ("toolu_b", "now", []),  # no arguments: no input_json_delta at all
            ],
            text="Checking.",
            input_tokens=30,
            output_tokens=12,
        )
    )
    pieces = await collect(engine, chat_input(("user", "Weather?")), _tools())
    *before, last = pieces
    assert all(not p.tool_calls for p in before)
    assert "".join(p.text for p in pieces) == "Checking."
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments_json) for c in last.tool_calls] == [
        ("toolu_a", "get_weather", '{"city": "Paris\\u00e9", "unit": "c"}'),
        ("toolu_b", "now", "{}"),
    ]
    assert json.loads(last.tool_calls[0].arguments_json) == {"city": "Parisé", "unit": "c"}
    assert (last.input_tokens, last.output_tokens) == (30, 12)


async def test_events_split_across_network_reads_still_gather_whole(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    raw = b"".join(_sse(e) for e in tool_use_events([("toolu_a", "now", ["{", "}"])]))
    # Every 7 bytes in its own write: events and their JSON cut mid-token.
    fake.stream([raw[i : i + 7].decode("latin-1") for i in range(0, len(raw), 7)])
    pieces = await collect(engine, chat_input(("user", "Time?")), _tools())
    assert [(c.id, c.name, c.arguments_json) for c in pieces[-1].tool_calls] == [
        ("toolu_a", "now", "{}")
    ]


async def test_a_call_cut_by_max_tokens_is_left_off_the_answer(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.stream(tool_use_events([("toolu_a", "get_weather", ['{"ci'])], stop_reason="max_tokens"))
    pieces = await collect(engine, chat_input(("user", "Weather?")), _tools())
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert pieces[-1].tool_calls == ()


@pytest.mark.parametrize(
    ("calls", "problem"),
    [
        ([("toolu_a", "get_weather", ['{"city": '])], "input is not a JSON object"),
        ([("toolu_a", "get_weather", ["[1, 2]"])], "input is not a JSON object"),
        ([("toolu_a", "", ["{}"])], "tool_use block name is '', not a string"),
        ([], "stop_reason tool_use without a tool_use block"),
    ],
)
async def test_a_call_the_caller_could_not_run_is_a_protocol_error(
    fake: FakeAnthropic,
    engine: AnthropicEngine,
    calls: list[tuple[str, str, list[str]]],
    problem: str,
) -> None:
    fake.stream(tool_use_events(calls))
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine, chat_input(("user", "Weather?")), _tools())
    assert problem in caught.value.message


async def test_a_fragment_for_no_tool_use_block_is_a_protocol_error(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    events = tool_use_events([("toolu_a", "now", ["{}"])])
    stray = {
        "type": "content_block_delta",
        "index": 5,
        "delta": {"type": "input_json_delta", "partial_json": "{}"},
    }
    fake.stream([*events[:2], ("content_block_delta", stray), *events[2:]])
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine, chat_input(("user", "Time?")), _tools())
    assert "input_json_delta for block 5, which is no tool_use block" in caught.value.message


async def test_cache_reads_are_cached_input_and_all_input_is_counted(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.reply("Hi", input_tokens=10, cache_creation=200, cache_read=1500, output_tokens=4)
    last = (await collect(engine))[-1]
    assert (last.input_tokens, last.cached_input_tokens, last.output_tokens) == (1710, 1500, 4)


def _bad(messages: list[tuple[str, str, str]]) -> common_pb2.Input:
    """A chat of (role, content, tool call id): an assistant's id is a call it makes."""
    model_input = common_pb2.Input()
    for role, content, call_id in messages:
        message = model_input.chat.messages.add(role=role, content=content)
        if role == "assistant" and call_id:
            message.tool_calls.add(id=call_id, name="now")
        elif call_id:
            message.tool_call_id = call_id
    return model_input


@pytest.mark.parametrize(
    ("model_input", "field", "says"),
    [
        (
            _bad([("user", "Time?", ""), ("assistant", "", "toolu_a"), ("user", "Well?", "")]),
            "input.chat.messages[2]",
            "needs the turn after tool calls to begin with a tool result for each (toolu_a)",
        ),
        (
            _bad(
                [
                    ("user", "Time?", ""),
                    ("assistant", "", "toolu_a"),
                    ("tool", "09:30", "toolu_b"),
                ]
            ),
            "input.chat.messages[2]",
            "begin with a tool result for each (toolu_a)",
        ),
        (
            _bad([("user", "Time?", ""), ("tool", "09:30", "toolu_a")]),
            "input.chat.messages[0]",
            "tool result for 'toolu_a', which the assistant message before did not call",
        ),
        (
            _bad([("user", "Time?", ""), ("assistant", "", "toolu_a")]),
            "input.chat.messages[1]",
            "the chat ends with tool calls (toolu_a) and no results",
        ),
    ],
)
async def test_tool_turns_out_of_order_are_refused_before_any_call(
    fake: FakeAnthropic,
    engine: AnthropicEngine,
    model_input: common_pb2.Input,
    field: str,
    says: str,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, _tools())
    assert caught.value.field == field
    assert says in caught.value.message
    assert fake.received == []


async def test_arguments_that_are_no_json_object_are_refused_before_any_call(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    model_input = _round_trip()
    model_input.chat.messages[1].tool_calls[0].arguments_json = '["Paris"]'
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, _tools())
    assert caught.value.field == "input.chat.messages[1].tool_calls[0].arguments_json"
    assert "takes a call's input as a JSON object, not list" in caught.value.message
    model_input.chat.messages[1].tool_calls[0].arguments_json = '{"city": '
    with pytest.raises(InvalidRequest, match="arguments_json is not JSON"):
        await collect(engine, model_input, _tools())
    assert fake.received == []


# ---- through a real gateway stack ------------------------------------------------------


@pytest.fixture
async def gateway(
    fake: FakeAnthropic, make_stack: StackFactory
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
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
    # Discovery on: the registry's api source lists the model with the catalog's prices.
    stack = await make_stack(roles=ROLES, config=config, discovery=True)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        for _ in range(100):
            entry = await registry.GetModel(registry_pb2.GetModelRequest(id=MODEL))
            if entry.cost.usd_per_cached_input_token and entry.deployments:
                break
            await asyncio.sleep(0.05)
        assert entry.cost.usd_per_cached_input_token == pytest.approx(USD_CACHED)
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request(model_input: common_pb2.Input | None = None) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL, params=_tools())
    request.input.CopyFrom(model_input or chat_input(("user", "Weather in Paris?")))
    return request


async def test_generate_stream_and_generate_return_whole_calls_through_the_gateway(
    fake: FakeAnthropic, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    fake.stream(
        tool_use_events(
            [("toolu_a", "get_weather", ['{"city"', ': "Paris"}']), ("toolu_b", "now", [])],
            input_tokens=20,
            cache_read=1000,
            output_tokens=12,
        )
    )
    chunks = [c async for c in gateway.GenerateStream(_request(), timeout=10)]
    *before, last = chunks
    assert all(not c.tool_calls for c in before)
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments_json) for c in last.tool_calls] == [
        ("toolu_a", "get_weather", '{"city": "Paris"}'),
        ("toolu_b", "now", "{}"),
    ]
    usage = last.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (1020, 1000, 12)
    # The catalog's prices: the 1000 cache reads at the cached-input price, not the input one.
    assert usage.cost_usd == pytest.approx(20 * USD_IN + 1000 * USD_CACHED + 12 * USD_OUT)

    reply = await gateway.Generate(_request(), timeout=10)
    assert reply.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name) for c in reply.tool_calls] == [
        ("toolu_a", "get_weather"),
        ("toolu_b", "now"),
    ]
    assert reply.usage.cached_input_tokens == 1000


async def test_a_tool_round_trip_through_the_gateway(
    fake: FakeAnthropic, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    fake.reply("It is 18 C at 09:30.")
    reply = await gateway.Generate(_request(_round_trip()), timeout=10)
    assert (reply.text, reply.finish_reason) == (
        "It is 18 C at 09:30.",
        common_pb2.FINISH_REASON_STOP,
    )
    sent = fake.received[-1].body
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent["messages"][2]["content"]] == ["tool_result", "tool_result"]


async def test_tool_turns_out_of_order_fail_the_call_as_invalid_argument_unsent(
    fake: FakeAnthropic, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    model_input = _bad([("user", "Time?", ""), ("assistant", "", "toolu_a"), ("user", "?", "")])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(model_input), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = error_from_rpc(caught.value)
    assert isinstance(error, InvalidRequest)
    assert error.field == "input.chat.messages[2]"
    assert fake.received == []
