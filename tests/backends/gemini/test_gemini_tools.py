"""Tools on the gemini engine: function declarations and tool config sent, tool turns as
``functionCall``/``functionResponse`` parts, streamed calls sent whole with
FINISH_REASON_TOOL_CALLS, cached prompt tokens counted, and all of it through a real
gateway stack with the catalog's cached-input price (fake: tests/support/fake_gemini.py,
after Google's function-calling guide and API reference as of 2026-12-01)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from backends.gemini.gemini_engines import STUDIO_ID, VERTEX_ID, collect
from conftest import StackFactory
from support.fake_gemini import API_KEY, MODEL, FakeGemini, google_error, response

from modelyard.backends.gemini import GeminiEngine
from modelyard.config import parse_config
from modelyard_client.errors import InvalidRequest, ProviderProtocolError
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
    "required": ["city"],
    "additionalProperties": False,
}
# gemini-2.5-flash in api_models.yaml, USD per token.
USD_IN, USD_CACHED, USD_OUT = 0.30 / 1e6, 0.03 / 1e6, 2.50 / 1e6


def _tools(choice: str = "") -> common_pb2.GenerationParams:
    params = common_pb2.GenerationParams(tool_choice=choice)
    params.tools.add(
        name="get_weather",
        description="The weather in a city.",
        parameters_json=json.dumps(WEATHER_SCHEMA),
    )
    params.tools.add(name="now")  # no description, no arguments
    return params


def _ask(text: str = "Weather in Oslo?") -> common_pb2.Input:
    model_input = common_pb2.Input()
    model_input.chat.messages.add(role="user", content=text)
    return model_input


def _tool_turns() -> common_pb2.Input:
    """A user asks, the model called two functions (with some text), both answered."""
    model_input = _ask()
    said = model_input.chat.messages.add(role="assistant", content="Checking.")
    said.tool_calls.add(id="c-1", name="get_weather", arguments_json='{"city": "Oslo"}')
    said.tool_calls.add(id="c-2", name="now", arguments_json="")
    model_input.chat.messages.add(role="tool", tool_call_id="c-1", content='{"temp_c": 3}')
    model_input.chat.messages.add(role="tool", tool_call_id="c-2", content="09:30")
    return model_input


def _finished(text: str = "Done.") -> list[dict[str, object]]:
    return [response(text, finish="STOP", usage=(5, 2))]


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("", None),
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
        (
            "get_weather",
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        ),
    ],
)
async def test_tools_are_function_declarations_with_their_json_schema_and_the_choice_a_mode(
    fake: FakeGemini, studio: GeminiEngine, choice: str, config: object
) -> None:
    fake.stream(_finished())
    await collect(studio, _ask(), _tools(choice))

    [call] = fake.calls
    assert call.body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parametersJsonSchema": WEATHER_SCHEMA,  # as it is: nothing lost
                },
                {"name": "now"},
            ]
        }
    ]
    assert call.body.get("toolConfig") == config


async def test_tool_turns_are_function_call_and_function_response_parts(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(_finished("3 degrees at 09:30."))
    pieces = await collect(studio, _tool_turns(), _tools())

    assert "".join(p.text for p in pieces) == "3 degrees at 09:30."
    [call] = fake.calls  # and the fake found each result's function called before
    assert call.body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Oslo?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                {"functionCall": {"name": "now", "args": {}}},
            ],
        },
        {
            "role": "user",  # both results in one turn, each named by its call
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 3}}},
                {"functionResponse": {"name": "now", "response": {"output": "09:30"}}},
            ],
        },
    ]


async def test_an_assistant_turn_of_calls_only_has_no_text_part(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    model_input = _ask()
    said = model_input.chat.messages.add(role="assistant")
    said.tool_calls.add(id="x", name="now", arguments_json="{}")
    model_input.chat.messages.add(role="tool", tool_call_id="x", content="noon")
    fake.stream(_finished())
    await collect(studio, model_input, _tools())
    assert fake.calls[0].body["contents"][1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "now", "args": {}}}],
    }


@pytest.mark.parametrize("model_id", [STUDIO_ID, VERTEX_ID])
async def test_streamed_function_calls_come_whole_on_the_last_piece_with_tool_calls(
    fake: FakeGemini, studio: GeminiEngine, vertex: GeminiEngine, model_id: str
) -> None:
    engine = studio if model_id == STUDIO_ID else vertex
    fake.stream(
        [
            response("Let me look.", usage=(12, 3)),
            response(calls=[{"name": "get_weather", "args": {"city": "Oslo"}}], usage=(12, 9)),
            response(
                calls=[{"name": "get_weather", "args": {"city": "Bergen", "unit": "C"}}],
                finish="STOP",
                usage=(12, 16),
            ),
        ]
    )
    pieces = await collect(engine, _ask(), _tools(), model_id)

    assert "".join(p.text for p in pieces) == "Let me look."
    assert all(not p.tool_calls for p in pieces[:-1])
    last = pieces[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.name, json.loads(c.arguments_json)) for c in last.tool_calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Bergen", "unit": "C"}),
    ]
    first, second = (c.id for c in last.tool_calls)
    assert first.startswith("gemini-call-") and len(first) == len("gemini-call-") + 24
    assert first != second  # two calls of one function: two ids
    assert (last.input_tokens, last.output_tokens) == (12, 16)

    again = await collect(engine, _ask(), _tools(), model_id)  # the same answer again
    assert [c.id for c in again[-1].tool_calls] == [first, second]


async def test_a_call_id_gemini_gives_is_kept(fake: FakeGemini, studio: GeminiEngine) -> None:
    fake.stream([response(calls=[{"id": "g-7", "name": "now", "args": {}}], finish="STOP")])
    [piece] = await collect(studio, _ask(), _tools())
    assert [(c.id, c.name, c.arguments_json) for c in piece.tool_calls] == [("g-7", "now", "{}")]


async def test_a_malformed_function_call_is_a_protocol_error(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream([response(calls=[{"name": "now", "args": [1, 2]}], finish="STOP")])
    with pytest.raises(ProviderProtocolError, match=r"functionCall\.args is \[1, 2\], not an"):
        await collect(studio, _ask(), _tools())


async def test_cached_prompt_tokens_are_cached_input_within_the_input(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream([response("ok", finish="STOP", usage=(1200, 1), cached=1024)])
    [piece] = await collect(studio, _ask(), _tools())
    assert (piece.input_tokens, piece.cached_input_tokens, piece.output_tokens) == (1200, 1024, 1)
    assert piece.finish_reason == common_pb2.FINISH_REASON_STOP  # no call: a plain stop


def _turn_with_call(arguments_json: str, result_id: str = "c-1") -> common_pb2.Input:
    model_input = _ask()
    said = model_input.chat.messages.add(role="assistant")
    said.tool_calls.add(id="c-1", name="get_weather", arguments_json=arguments_json)
    model_input.chat.messages.add(role="tool", tool_call_id=result_id, content="3")
    return model_input


@pytest.mark.parametrize(
    ("model_input", "field", "says"),
    [
        (
            _turn_with_call("[1]"),
            "input.chat.messages[1].tool_calls[0].arguments_json",
            "must be a JSON object",
        ),
        (
            _turn_with_call("{"),
            "input.chat.messages[1].tool_calls[0].arguments_json",
            "is not JSON",
        ),
        (
            _turn_with_call("{}", result_id="c-9"),
            "input.chat.messages[2].tool_call_id",
            "'c-9' answers no call of an earlier assistant message",
        ),
    ],
)
async def test_tool_turns_gemini_cannot_take_are_refused_before_any_call(
    fake: FakeGemini, studio: GeminiEngine, model_input: common_pb2.Input, field: str, says: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(studio, model_input, _tools())
    assert caught.value.field == field
    assert says in caught.value.message
    assert fake.calls == []


# ---- through a real gateway stack --------------------------------------------------


@pytest.fixture
async def gateway(
    fake: FakeGemini, make_stack: StackFactory, tmp_path: Path
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    config = parse_config(
        f"""
model_system:
  backends:
    gemini:
      api_key: "${{GEMINI_API_KEY}}"
      base_url: "{fake.url}"
      models: [{MODEL}]
""",
        env={"GEMINI_API_KEY": API_KEY},
    )
    stack = await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request(model_input: common_pb2.Input, choice: str = "auto") -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=STUDIO_ID, input=model_input)
    request.params.CopyFrom(_tools(choice))
    return request


_CALLED = [
    response(calls=[{"name": "get_weather", "args": {"city": "Oslo"}}], usage=(2000, 5)),
    response(finish="STOP", usage=(2000, 7), cached=1800),
]


async def test_generate_stream_returns_the_calls_with_tool_calls_and_prices_cached_input(
    fake: FakeGemini, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    fake.stream(_CALLED)
    chunks = [c async for c in gateway.GenerateStream(_request(_ask()), timeout=10)]

    last = chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    [call] = last.tool_calls
    assert (call.name, json.loads(call.arguments_json)) == ("get_weather", {"city": "Oslo"})
    assert call.id.startswith("gemini-call-")
    usage = last.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (2000, 1800, 7)
    # 200 uncached input tokens, 1800 at the catalog's cached price, 7 out.
    assert usage.cost_usd == pytest.approx(200 * USD_IN + 1800 * USD_CACHED + 7 * USD_OUT)
    assert fake.calls[0].body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


async def test_a_tool_turn_round_trips_through_generate(
    fake: FakeGemini, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    fake.stream(_CALLED)
    first = await gateway.Generate(_request(_ask(), "get_weather"), timeout=10)
    assert first.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    [call] = first.tool_calls

    follow_up = _ask()  # the caller sends the call back with its result
    said = follow_up.chat.messages.add(role="assistant")
    said.tool_calls.add().CopyFrom(call)
    follow_up.chat.messages.add(role="tool", tool_call_id=call.id, content='{"temp_c": 3}')
    fake.stream([response("3 degrees.", finish="STOP", usage=(30, 3))])
    second = await gateway.Generate(_request(follow_up), timeout=10)

    assert second.text == "3 degrees."
    assert second.finish_reason == common_pb2.FINISH_REASON_STOP
    assert fake.calls[1].body["contents"][1:] == [
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 3}}}],
        },
    ]


async def test_a_tool_result_of_no_call_is_refused_before_gemini_is_called(
    fake: FakeGemini, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    fake.fail(500, google_error(500, "INTERNAL", "must not be reached"))
    model_input = _ask()
    model_input.chat.messages.add(role="tool", tool_call_id="nowhere", content="3")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.Generate(_request(model_input), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tool_call_id 'nowhere' answers no call" in (caught.value.details() or "")
    assert fake.calls == []
