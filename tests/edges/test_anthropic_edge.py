"""The Anthropic Messages API on the HTTP edge, driven by the official `anthropic` SDK
(unchanged) against a real stack with a scripted model behind the gateway."""

from __future__ import annotations

import asyncio
import json

import anthropic
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly.stack import Stack
from modelyard_client.errors import BackendUnavailable, RateLimited
from modelyard_client.v1 import common_pb2

MODEL = "scripted/echo"


async def _edge(make_stack: StackFactory, engine: ScriptedEngine | None = None) -> Stack:
    stack = await make_stack(
        [engine or ScriptedEngine((MODEL,))],
        roles=("registry", "gateway"),
        http_listen="127.0.0.1:0",
    )
    for _ in range(100):
        if stack.view is not None and any(m.id == MODEL for m in stack.view.models()):
            break
        await asyncio.sleep(0.02)
    return stack


def _client(stack: Stack) -> anthropic.AsyncAnthropic:
    assert stack.edge is not None
    base = stack.edge.base_url.removesuffix("/v1")
    return anthropic.AsyncAnthropic(base_url=base, api_key="sk-test", max_retries=0)


async def test_a_plain_message(make_stack: StackFactory) -> None:
    engine = ScriptedEngine((MODEL,))
    stack = await _edge(make_stack, engine)
    async with _client(stack) as client:
        answer = await client.messages.create(
            model=MODEL,
            max_tokens=8,
            system="be brief",
            messages=[{"role": "user", "content": "hi"}],
            stop_sequences=["\n"],
            extra_body={"top_k": 5},
        )
    assert [b.text for b in answer.content if b.type == "text"] == ["hello world"]
    assert answer.stop_reason == "end_turn" and answer.model == MODEL
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (3, 3)
    [(_, model_input, params)] = engine.calls
    assert [(m.role, m.content) for m in model_input.chat.messages] == [
        ("system", "be brief"),
        ("user", "hi"),
    ]
    assert (params.max_tokens, params.top_k, list(params.stop)) == (8, 5, ["\n"])


async def test_a_streamed_message_in_the_apis_events(make_stack: StackFactory) -> None:
    stack = await _edge(make_stack)
    async with (
        _client(stack) as client,
        client.messages.stream(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "hello world"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 3


async def test_tool_turns_become_the_contracts(make_stack: StackFactory) -> None:
    engine = ScriptedEngine((MODEL,))
    stack = await _edge(make_stack, engine)
    async with _client(stack) as client:
        with pytest.raises(anthropic.BadRequestError, match="tools"):
            # The scripted model has no CAPABILITY_TOOLS: refused before it is called.
            await client.messages.create(
                model=MODEL,
                max_tokens=8,
                tools=[{"name": "now", "input_schema": {"type": "object", "properties": {}}}],
                messages=[
                    {"role": "user", "content": "time?"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "now", "input": {}}],
                    },
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "9"}],
                    },
                ],
            )
    assert engine.calls == []


def test_tool_turns_map_onto_chat_messages() -> None:
    from modelyard.edges.anthropic_wire import messages_request

    request, stream = messages_request(
        {
            "model": MODEL,
            "max_tokens": 8,
            "tool_choice": {"type": "any"},
            "messages": [
                {"role": "user", "content": "time?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "let me look"},
                        {"type": "tool_use", "id": "t1", "name": "now", "input": {"tz": "UTC"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "9:00"},
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ],
        }
    )
    messages = request.input.chat.messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "user"]
    assert messages[1].content == "let me look"
    assert messages[1].tool_calls[0].name == "now"
    assert json.loads(messages[1].tool_calls[0].arguments_json) == {"tz": "UTC"}
    assert (messages[2].tool_call_id, messages[2].content) == ("t1", "9:00")
    assert request.params.tool_choice == "required" and not stream


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 8, "messages": []}, "messages"),
        (
            {"model": MODEL, "max_tokens": 8, "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
                "frobnicate": 1,
            },
            "frobnicate",
        ),
    ],
)
async def test_bad_input_is_a_400_in_the_apis_shape(
    make_stack: StackFactory, body: dict[str, object], field: str
) -> None:
    engine = ScriptedEngine((MODEL,))
    stack = await _edge(make_stack, engine)
    async with _client(stack) as client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await client.post("/v1/messages", body=body, cast_to=object)
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert field in error["error"]["message"]
    assert engine.calls == []


async def test_errors_are_the_sdks_classes(make_stack: StackFactory) -> None:
    engine = ScriptedEngine((MODEL,), fail_with=RateLimited("busy", 1.0))
    stack = await _edge(make_stack, engine)
    async with _client(stack) as client:
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(
                model="scripted/none", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        engine.fail_with = BackendUnavailable("down")
        with pytest.raises(anthropic.InternalServerError) as caught:
            await client.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.status_code == 529  # overloaded_error, as the API answers it


async def test_a_stream_cut_midway_ends_with_an_error_event(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(
        (MODEL,), pieces=("a", "b", "c"), fail_with=BackendUnavailable("gone"), fail_after=2
    )
    stack = await _edge(make_stack, engine)
    async with _client(stack) as client:
        got: list[str] = []
        with pytest.raises(anthropic.APIStatusError):
            async with client.messages.stream(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                async for text in stream.text_stream:
                    got.append(text)
    assert "".join(got) == "ab"


def test_stop_reasons() -> None:
    from modelyard.edges.anthropic_wire import STOP_REASONS

    assert STOP_REASONS[common_pb2.FINISH_REASON_TOOL_CALLS] == "tool_use"
    assert STOP_REASONS[common_pb2.FINISH_REASON_LENGTH] == "max_tokens"
