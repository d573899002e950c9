"""Tools on the cohere engine (backends/cohere/tools.py): the definitions, the choice and the
tool turns sent as Cohere's Chat v2 tool use guide says, streamed ``tool-call-*`` events
gathered into whole calls, a named tool choice refused (or dropped when allowed), and
through a real gateway stack.

The fake (support/fake_cohere.py) streams the tool calling step as Cohere's tool use
streaming guide shows it and refuses tool messages that answer no call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.cohere.calls import KEY, MODEL, collect
from conftest import StackFactory
from support.fake_cohere import FakeCohere, message_end, sse, stream_events, tool_call_events

from modelyard.backends.cohere.chat_stream import CohereChatStream
from modelyard.backends.cohere.engine import CohereEngine
from modelyard.config import parse_config
from modelyard_client.errors import InvalidRequest, ProviderProtocolError, error_from_rpc
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
}
ROLES = ("registry", "gateway", "backend-openai-compat")


def _tools(tool_choice: str = "", drop: bool = False) -> common_pb2.GenerationParams:
    params = common_pb2.GenerationParams(
        max_tokens=64, tool_choice=tool_choice, drop_unsupported_params=drop
    )
    params.tools.add(
        name="get_weather", description="The weather now", parameters_json=json.dumps(WEATHER)
    )
    params.tools.add(name="now")  # no arguments
    return params


def _question() -> common_pb2.Input:
    model_input = common_pb2.Input()
    model_input.chat.messages.add(role="user", content="Weather in Paris, and the time?")
    return model_input


def _round_trip() -> common_pb2.Input:
    """The question, the assistant's plan and two calls, and both results."""
    model_input = _question()
    turn = model_input.chat.messages.add(role="assistant", content="I will look both up.")
    turn.tool_calls.add(id="get_weather_1", name="get_weather", arguments_json='{"city": "Paris"}')
    turn.tool_calls.add(id="now_2", name="now")
    model_input.chat.messages.add(
        role="tool", tool_call_id="get_weather_1", content='{"celsius": 18}'
    )
    model_input.chat.messages.add(role="tool", tool_call_id="now_2", content="09:30")
    return model_input


async def test_tools_and_each_choice_are_sent_as_the_reference_says(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    for choice, sent in [("", None), ("auto", None), ("required", "REQUIRED"), ("none", "NONE")]:
        await collect(engine, _question(), _tools(choice))
        body = cohere.bodies[-1]
        assert body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather now",
                    "parameters": WEATHER,
                },
            },
            {
                "type": "function",
                "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
            },
        ]
        assert body.get("tool_choice") == sent


async def test_a_named_choice_is_refused_naming_it_and_cohere_before_any_call(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, _question(), _tools("get_weather"))
    assert caught.value.field == "params.tool_choice"
    assert caught.value.message == (
        "params.tool_choice: Cohere's Chat v2 API cannot be told to call one named tool "
        "('get_weather'); it takes auto, required or none"
    )
    assert cohere.bodies == []


async def test_a_named_choice_is_dropped_and_listed_when_the_request_allows(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["ok"]))
    pieces = await collect(engine, _question(), _tools("get_weather", drop=True))
    assert "tool_choice" not in cohere.bodies[-1] and cohere.bodies[-1]["tools"]
    assert pieces[-1].dropped_params == ("tool_choice",)
    assert all(p.dropped_params == () for p in pieces[:-1])


async def test_a_tool_round_trip_sends_the_plan_the_calls_and_each_result(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["It is 18 C at 09:30."]))
    pieces = await collect(engine, _round_trip(), _tools())
    assert "".join(p.text for p in pieces) == "It is 18 C at 09:30."
    assert cohere.bodies[-1]["messages"] == [
        {"role": "user", "content": "Weather in Paris, and the time?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "get_weather_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "now_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
            ],
            "tool_plan": "I will look both up.",
        },
        {"role": "tool", "tool_call_id": "get_weather_1", "content": '{"celsius": 18}'},
        {"role": "tool", "tool_call_id": "now_2", "content": "09:30"},
    ]


async def test_streamed_events_become_the_plan_and_whole_calls_on_the_last_piece(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(
        tool_call_events(
            [
                ("get_weather_1", "get_weather", ['{"ci', 'ty": "Pa', 'ris", "un', 'it": "c"}']),
                ("now_2", "now", []),  # no arguments: no tool-call-delta at all
            ],
            plan=["I will ", "look both up."],
        )
    )
    pieces = await collect(engine, _question(), _tools())
    *before, last = pieces
    assert all(not p.tool_calls for p in before)
    assert "".join(p.text for p in pieces) == "I will look both up."
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments_json) for c in last.tool_calls] == [
        ("get_weather_1", "get_weather", '{"city": "Paris", "unit": "c"}'),
        ("now_2", "now", "{}"),
    ]
    assert (last.input_tokens, last.output_tokens, last.cached_input_tokens) == (40, 20, 0)


async def test_events_split_across_network_reads_still_gather_whole() -> None:
    raw = b"".join(sse(e) for e in tool_call_events([("now_1", "now", ["{", "}"])]))

    async def body() -> AsyncIterator[bytes]:
        # Every 5 bytes a read of its own: events and their JSON cut mid-token.
        for i in range(0, len(raw), 5):
            yield raw[i : i + 5]

    pieces = [p async for p in CohereChatStream("cohere", MODEL).pieces(body())]
    assert [(c.id, c.name, c.arguments_json) for c in pieces[-1].tool_calls] == [
        ("now_1", "now", "{}")
    ]


@pytest.mark.parametrize(
    ("events", "problem"),
    [
        (
            tool_call_events([("get_weather_1", "get_weather", ['{"city": '])]),
            "arguments are not a JSON object",
        ),
        (
            [
                {
                    "type": "tool-call-delta",
                    "index": 3,
                    "delta": {"message": {"tool_calls": {"function": {"arguments": "{}"}}}},
                },
                message_end("TOOL_CALL"),
            ],
            "tool-call-delta for call 3, which never started",
        ),
        (
            [
                {
                    "type": "tool-call-start",
                    "index": 0,
                    "delta": {"message": {"tool_calls": [{"id": "a"}]}},
                },
                message_end("TOOL_CALL"),
            ],
            "tool-call-start delta.message.tool_calls is not an object",
        ),
        (
            [
                {
                    "type": "tool-call-start",
                    "index": 0,
                    "delta": {"message": {"tool_calls": {"id": "a", "function": {"name": 7}}}},
                },
                message_end("TOOL_CALL"),
            ],
            "tool-call-start tool_calls name is 7, not a string",
        ),
        (tool_call_events([]), "finish_reason TOOL_CALL without a tool call"),
    ],
)
async def test_a_call_the_caller_could_not_run_is_a_protocol_error(
    cohere: FakeCohere, engine: CohereEngine, events: list[dict[str, object]], problem: str
) -> None:
    cohere.answer(events)
    with pytest.raises(ProviderProtocolError) as caught:
        await collect(engine, _question(), _tools())
    assert problem in caught.value.message


async def test_a_tool_message_without_its_call_id_is_refused_before_any_call(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    model_input = _round_trip()
    model_input.chat.messages[3].tool_call_id = ""
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, _tools())
    assert caught.value.field == "input.chat.messages[3].tool_call_id"
    assert cohere.bodies == []


# ---- through a real gateway stack ------------------------------------------------------


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


def _request(
    model_input: common_pb2.Input | None = None, params: common_pb2.GenerationParams | None = None
) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL, params=params or _tools())
    request.input.CopyFrom(model_input or _question())
    return request


async def test_generate_stream_and_generate_return_whole_calls_through_the_gateway(
    cohere: FakeCohere, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    cohere.answer(
        tool_call_events(
            [("get_weather_1", "get_weather", ['{"city"', ': "Paris"}']), ("now_2", "now", [])],
            plan=["Looking."],
        )
    )
    chunks = [c async for c in gateway.GenerateStream(_request(), timeout=10)]
    *before, last = chunks
    assert all(not c.tool_calls for c in before)
    assert "".join(c.text for c in chunks) == "Looking."
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments_json) for c in last.tool_calls] == [
        ("get_weather_1", "get_weather", '{"city": "Paris"}'),
        ("now_2", "now", "{}"),
    ]
    assert (last.usage.input_tokens, last.usage.output_tokens) == (40, 20)

    reply = await gateway.Generate(_request(), timeout=10)
    assert reply.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [c.name for c in reply.tool_calls] == ["get_weather", "now"]
    assert reply.text == "Looking."


async def test_a_tool_round_trip_through_the_gateway(
    cohere: FakeCohere, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    cohere.answer(stream_events(["It is 18 C at 09:30."]))
    reply = await gateway.Generate(_request(_round_trip()), timeout=10)
    assert reply.text == "It is 18 C at 09:30."
    assert [m["role"] for m in cohere.bodies[-1]["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
    ]


async def test_a_named_choice_through_the_gateway_is_invalid_argument_or_dropped(
    cohere: FakeCohere, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(params=_tools("now")), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = error_from_rpc(caught.value)
    assert isinstance(error, InvalidRequest) and error.field == "params.tool_choice"
    assert cohere.bodies == []

    cohere.answer(stream_events(["ok"]))
    reply = await gateway.Generate(_request(params=_tools("now", drop=True)), timeout=10)
    assert list(reply.dropped_params) == ["tool_choice"]
    chunks = [
        c
        async for c in gateway.GenerateStream(_request(params=_tools("now", drop=True)), timeout=10)
    ]
    assert list(chunks[-1].dropped_params) == ["tool_choice"]
