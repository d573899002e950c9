"""Tools on the native Ollama engine: definitions and tool turns on /api/chat, whole calls
streamed back (against `support.fake_ollama`, which follows Ollama's API reference for
tools), tool_choice Ollama cannot honour refused or dropped, and the same through a real
gateway stack."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest
from backends.ollama.calls import chat_input, collect
from conftest import StackFactory
from support.fake_ollama import FakeOllama, Reply

from modelyard.backends.ollama.engine import OllamaEngine
from modelyard.config import parse_config
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

TOOLS_MODEL = "ollama/qwen3:8b"  # the fake's model with the "tools" capability
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}


def _params(**fields: object) -> common_pb2.GenerationParams:
    params = common_pb2.GenerationParams(**fields)  # type: ignore[arg-type]
    params.tools.add(
        name="get_weather", description="The weather now", parameters_json=json.dumps(WEATHER)
    )
    return params


def _tool_turns() -> common_pb2.Input:
    """A user question, the assistant's call, and the call's result."""
    model_input = chat_input(("user", "Weather in Paris?"))
    asked = model_input.chat.messages.add(role="assistant")
    asked.tool_calls.add(id="call_1", name="get_weather", arguments_json='{"city": "Paris"}')
    model_input.chat.messages.add(role="tool", content='{"temp_c": 21}', tool_call_id="call_1")
    return model_input


async def test_tools_go_out_as_function_definitions_and_calls_come_back_whole(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.reply(Reply(texts=[], tool_calls=[CALL], eval_count=7))
    pieces = await collect(engine, chat_input(("user", "Weather?")), _params(), TOOLS_MODEL)

    [body] = daemon.chats()
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather now",
                "parameters": WEATHER,
            },
        }
    ]
    assert "tool_choice" not in body  # Ollama has none
    last = pieces[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS  # "stop" with calls
    [call] = last.tool_calls
    assert call.name == "get_weather"
    assert json.loads(call.arguments_json) == {"city": "Paris"}
    assert call.id.startswith("call_") and len(call.id) == 29
    assert last.dropped_params == ()


async def test_call_ids_are_stable_and_distinct_within_an_answer(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    other = {"function": {"name": "get_weather", "arguments": {"city": "Lyon"}}}
    daemon.reply(Reply(texts=[], tool_calls=[CALL, other]), Reply(texts=[], tool_calls=[CALL]))
    first = (await collect(engine, chat_input(("user", "?")), _params(), TOOLS_MODEL))[-1]
    again = (await collect(engine, chat_input(("user", "?")), _params(), TOOLS_MODEL))[-1]

    ids = [c.id for c in first.tool_calls]
    assert len(set(ids)) == 2
    assert again.tool_calls[0].id == ids[0]  # the same call in the same place


async def test_text_and_a_call_in_one_answer(daemon: FakeOllama, engine: OllamaEngine) -> None:
    daemon.reply(Reply(texts=["Let me ", "check."], tool_calls=[CALL]))
    pieces = await collect(engine, chat_input(("user", "?")), _params(), TOOLS_MODEL)

    assert "".join(p.text for p in pieces) == "Let me check."
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [c.name for c in pieces[-1].tool_calls] == ["get_weather"]


async def test_an_answer_without_calls_still_finishes_stop(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.reply(Reply(texts=["Sunny."]))
    pieces = await collect(engine, chat_input(("user", "?")), _params(), TOOLS_MODEL)
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    assert pieces[-1].tool_calls == ()


async def test_tool_turns_carry_object_arguments_and_the_result_s_tool_name(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.reply(Reply(texts=["21 degrees."]))
    pieces = await collect(engine, _tool_turns(), _params(), TOOLS_MODEL)

    assert "".join(p.text for p in pieces) == "21 degrees."
    [body] = daemon.chats()
    user, asked, result = body["messages"]
    assert user == {"role": "user", "content": "Weather in Paris?"}
    assert asked["tool_calls"] == [CALL]  # arguments an object, as Ollama takes them
    assert result == {"role": "tool", "content": '{"temp_c": 21}', "tool_name": "get_weather"}


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [("{not json", "is not JSON"), ("[1, 2]", "is a JSON list")],
)
async def test_call_arguments_that_are_no_object_are_refused_before_any_call(
    daemon: FakeOllama, engine: OllamaEngine, arguments: str, problem: str
) -> None:
    model_input = _tool_turns()
    model_input.chat.messages[1].tool_calls[0].arguments_json = arguments
    with pytest.raises(InvalidRequest, match=problem) as info:
        await collect(engine, model_input, _params(), TOOLS_MODEL)
    assert info.value.field == "input.chat.messages[1].tool_calls[0].arguments_json"
    assert daemon.chats() == []


async def test_a_result_for_no_earlier_call_is_refused_naming_its_id(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    model_input = _tool_turns()
    model_input.chat.messages[2].tool_call_id = "call_unknown"
    with pytest.raises(InvalidRequest, match="call_unknown") as info:
        await collect(engine, model_input, _params(), TOOLS_MODEL)
    assert info.value.field == "input.chat.messages[2].tool_call_id"
    assert daemon.chats() == []


@pytest.mark.parametrize("choice", ["required", "get_weather"])
async def test_a_tool_choice_ollama_cannot_honour_is_refused_before_any_call(
    daemon: FakeOllama, engine: OllamaEngine, choice: str
) -> None:
    with pytest.raises(InvalidRequest, match=r"params\.tool_choice .*ollama") as info:
        await collect(engine, chat_input(("user", "?")), _params(tool_choice=choice), TOOLS_MODEL)
    assert info.value.field == "params.tool_choice"
    assert daemon.chats() == []


async def test_with_drop_unsupported_params_the_choice_is_left_out_and_named(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.reply(Reply(texts=[], tool_calls=[CALL]))
    params = _params(tool_choice="required", drop_unsupported_params=True, voice="alloy")
    pieces = await collect(engine, chat_input(("user", "?")), params, TOOLS_MODEL)

    [body] = daemon.chats()
    assert "tool_choice" not in body and body["tools"]
    assert pieces[-1].dropped_params == ("tool_choice", "voice")  # the proto's order
    assert [p.dropped_params for p in pieces[:-1]] == [()] * (len(pieces) - 1)


@pytest.mark.parametrize("choice", ["", "auto"])
async def test_auto_is_what_ollama_does(
    daemon: FakeOllama, engine: OllamaEngine, choice: str
) -> None:
    pieces = await collect(
        engine, chat_input(("user", "?")), _params(tool_choice=choice), TOOLS_MODEL
    )
    assert daemon.chats()[0]["tools"]
    assert pieces[-1].dropped_params == ()


async def test_tool_choice_none_offers_the_model_no_tools(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    pieces = await collect(
        engine, chat_input(("user", "?")), _params(tool_choice="none"), TOOLS_MODEL
    )
    assert not daemon.chats()[0].get("tools")  # the client sends [] for none
    assert pieces[-1].dropped_params == ()


async def test_the_daemon_s_refusal_of_tools_for_a_model_without_them_is_invalid_request(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    with pytest.raises(InvalidRequest, match="does not support tools"):
        await collect(engine, chat_input(("user", "?")), _params(), "ollama/gemma3:270m")


# ---- through a real gateway stack ------------------------------------------------------


@pytest.fixture
async def gateway(
    daemon: FakeOllama, make_stack: StackFactory
) -> AsyncIterator[gateway_pb2_grpc.GatewayServiceAsyncStub]:
    config = parse_config(
        f"model_system:\n  backends:\n    ollama: {{endpoint: '{daemon.url}'}}\n", env={}
    )
    stack = await make_stack(
        roles=("registry", "gateway", "backend-openai-compat"),
        config=config,
        discover_ollama=True,
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        yield gateway_pb2_grpc.GatewayServiceStub(channel)


def _request(**fields: object) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=TOOLS_MODEL)
    request.input.chat.messages.add(role="user", content="Weather in Paris?")
    request.params.CopyFrom(_params(**fields))
    request.params.max_tokens = 32
    return request


async def test_the_gateway_streams_ollama_s_tool_calls(
    daemon: FakeOllama, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    daemon.reply(Reply(texts=[], tool_calls=[CALL]), Reply(texts=[], tool_calls=[CALL]))
    chunks = [c async for c in gateway.GenerateStream(_request(), timeout=10)]
    answer = await gateway.Generate(_request(), timeout=10)

    last = chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    [call] = last.tool_calls
    assert (call.name, json.loads(call.arguments_json)) == ("get_weather", {"city": "Paris"})
    assert answer.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name) for c in answer.tool_calls] == [(call.id, "get_weather")]


async def test_the_gateway_passes_dropped_params_to_the_caller(
    daemon: FakeOllama, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    daemon.reply(Reply(texts=["Sunny."]))
    answer = await gateway.Generate(
        _request(tool_choice="required", drop_unsupported_params=True), timeout=10
    )
    assert answer.text == "Sunny."
    assert list(answer.dropped_params) == ["tool_choice"]


async def test_the_gateway_refuses_a_choice_ollama_cannot_honour(
    daemon: FakeOllama, gateway: gateway_pb2_grpc.GatewayServiceAsyncStub
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gateway.Generate(_request(tool_choice="required"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "params.tool_choice" in (info.value.details() or "")
    assert daemon.chats() == []
