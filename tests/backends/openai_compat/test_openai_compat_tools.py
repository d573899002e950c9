"""Tools on the OpenAI wire, through the gateway: the definitions and tool turns sent, and
a streamed call's fragments gathered into whole calls (openai_compat/tools.py).

The fake streams tool calls as OpenAI's Chat Completions streaming reference shows
them (`openai_fake.tool_call_chunk`): the first fragment of a call with its id and
name, then pieces of its arguments, calls told apart by ``index``, and a finish of
``tool_calls``.
"""

from __future__ import annotations

import json

import grpc
import pytest
from backends.openai_compat.openai_fake import (
    MODEL,
    STACK_ROLES,
    Clients,
    FakeUpstream,
    chunk,
    request,
    tool_call_chunk,
    usage_chunk,
)
from conftest import StackFactory

from modelyard.config import parse_config
from modelyard_client.errors import error_from_rpc
from modelyard_client.v1 import (
    backend_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2_grpc,
)

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
}


async def _stack(
    make_stack: StackFactory, upstream: FakeUpstream, capabilities: str = "[chat, streaming, tools]"
) -> Clients:
    """The fake's model as the operator declares it: its capabilities, and its prices
    ($2 and $8 per million input and output tokens)."""
    config = parse_config(
        f"""
model_system:
  backends:
    custom:
      kind: openai_compat
      endpoint: "{upstream.url}"
      model_profiles:
        fake-model:
          capabilities: {capabilities}
          usd_per_1m_input_tokens: 2
          usd_per_1m_output_tokens: 8
"""
    )
    stack = await make_stack(roles=STACK_ROLES, config=config)
    channel = grpc.aio.insecure_channel(stack.address)
    return Clients(
        stack,
        gateway_pb2_grpc.GatewayServiceStub(channel),
        backend_pb2_grpc.BackendServiceStub(channel),
        registry_pb2_grpc.RegistryServiceStub(channel),
    )


def _with_tools(req: gateway_pb2.GenerateRequest) -> gateway_pb2.GenerateRequest:
    req.params.tools.add(
        name="get_weather", description="The weather now", parameters_json=json.dumps(WEATHER)
    )
    req.params.tools.add(name="now")  # no arguments
    return req


def _two_calls() -> list[dict[str, object]]:
    return [
        tool_call_chunk(0, call_id="call_a", name="get_weather"),
        tool_call_chunk(1, call_id="call_b", name="now"),
        tool_call_chunk(0, arguments='{"city": "Pa'),
        tool_call_chunk(0, arguments='ris", "unit": "c"}'),
        tool_call_chunk(1, arguments="{}"),
        chunk(finish_reason="tool_calls"),
        usage_chunk(30, 12),
    ]


async def test_tools_and_a_named_choice_are_sent_as_the_reference_says(
    upstream: FakeUpstream, make_stack: StackFactory
) -> None:
    upstream.stream([chunk("ok"), chunk(finish_reason="stop")])
    clients = await _stack(make_stack, upstream)
    req = _with_tools(request("Weather in Paris?"))
    req.params.tool_choice = "get_weather"
    [c async for c in clients.gateway.GenerateStream(req, timeout=10)]

    (body,) = upstream.bodies
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
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


async def test_a_chat_with_tool_turns_sends_the_calls_and_their_results(
    upstream: FakeUpstream, make_stack: StackFactory
) -> None:
    upstream.stream([chunk("It is 18 C."), chunk(finish_reason="stop")])
    clients = await _stack(make_stack, upstream)
    req = _with_tools(gateway_pb2.GenerateRequest(model=MODEL))
    req.params.tool_choice = "auto"
    chat = req.input.chat.messages
    chat.add(role="user", content="Weather in Paris?")
    turn = chat.add(role="assistant")
    turn.tool_calls.add(id="call_a", name="get_weather", arguments_json='{"city": "Paris"}')
    chat.add(role="tool", tool_call_id="call_a", content='{"celsius": 18}')
    reply = await clients.gateway.Generate(req, timeout=10)
    assert reply.text == "It is 18 C."

    (body,) = upstream.bodies
    assert body["tool_choice"] == "auto"
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": '{"celsius": 18}', "tool_call_id": "call_a"},
    ]


async def test_streamed_fragments_reach_the_caller_as_whole_calls_on_the_last_chunk(
    upstream: FakeUpstream, make_stack: StackFactory
) -> None:
    upstream.stream(_two_calls())
    clients = await _stack(make_stack, upstream)
    chunks = [
        c
        async for c in clients.gateway.GenerateStream(
            _with_tools(request("Weather in Paris?")), timeout=10
        )
    ]
    *before, last = chunks
    assert all(not c.tool_calls for c in before)
    assert last.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [(c.id, c.name, c.arguments_json) for c in last.tool_calls] == [
        ("call_a", "get_weather", '{"city": "Paris", "unit": "c"}'),
        ("call_b", "now", "{}"),
    ]
    assert (last.usage.input_tokens, last.usage.output_tokens) == (30, 12)
    assert last.usage.cost_usd == pytest.approx(30 * 2e-6 + 12 * 8e-6)  # the catalog's prices

    reply = await clients.gateway.Generate(_with_tools(request("Weather in Paris?")), timeout=10)
    assert reply.finish_reason == common_pb2.FINISH_REASON_TOOL_CALLS
    assert [c.name for c in reply.tool_calls] == ["get_weather", "now"]


@pytest.mark.parametrize(
    ("fragment", "problem"),
    [
        (tool_call_chunk(0, call_id="call_a", arguments="{}"), "tool call 0 has no function name"),
        (
            {"choices": [{"index": 0, "delta": {"tool_calls": {"index": 0}}}]},
            "tool_calls is not a list",
        ),
        (
            {
                "choices": [
                    {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": 7}}]}}
                ]
            },
            "tool_calls[0].name is 7, not a string",
        ),
    ],
)
async def test_a_call_the_caller_could_not_run_is_a_protocol_error(
    upstream: FakeUpstream, make_stack: StackFactory, fragment: dict[str, object], problem: str
) -> None:
    upstream.stream([fragment, chunk(finish_reason="tool_calls")])
    clients = await _stack(make_stack, upstream)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(_with_tools(request()), timeout=10)
    err = error_from_rpc(info.value)
    assert err.reason == "PROVIDER_PROTOCOL_ERROR"
    assert problem in err.message


async def test_an_answer_without_tools_sends_no_tool_fields(
    upstream: FakeUpstream, make_stack: StackFactory
) -> None:
    upstream.stream([chunk("hi"), chunk(finish_reason="stop")])
    clients = await _stack(make_stack, upstream)
    await clients.gateway.Generate(request(), timeout=10)
    assert "tools" not in upstream.bodies[0] and "tool_choice" not in upstream.bodies[0]


async def test_a_model_that_does_not_call_tools_is_refused_them_before_any_upstream_call(
    upstream: FakeUpstream, make_stack: StackFactory
) -> None:
    clients = await _stack(make_stack, upstream, capabilities="[chat, streaming]")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await clients.gateway.Generate(_with_tools(request()), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_from_rpc(info.value).message == (
        "params.tools: model 'custom/fake-model' (provider 'custom') does not call tools "
        "(no CAPABILITY_TOOLS in its catalog entry)"
    )
    assert upstream.bodies == []
