"""Conversations: history sent before a request's input, across a swap, trimmed to the window.

Through a real stack (registry, hot-swap, gateway) with scripted engines that
record every input they are sent, so what reached the model is checked whole.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import default_config
from modelyard.config.schema import HotSwapConfig
from modelyard.gateway.conversations import (
    Conversations,
    ConversationStore,
    message_tokens,
)
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
)

Message = common_pb2.ChatMessage
Status = hotswap_pb2.SwapStatus


def _turn(
    text: str, *, conversation: str = "c1", model: str = "chat", system: str = ""
) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model, conversation_id=conversation)
    if system:
        request.input.chat.messages.add(role="system", content=system)
    request.input.chat.messages.add(role="user", content=text)
    request.params.max_tokens = 8
    return request


async def _stack(make_stack: StackFactory, engine: ScriptedEngine) -> Stack:
    config = dataclasses.replace(
        default_config({}),
        hot_swap=HotSwapConfig(routes={"chat": "scripted/echo"}, grace_period_ms=1),
    )
    return await make_stack(
        roles=("registry", "hotswap", "gateway"), engines=[engine], config=config
    )


def _sent(engine: ScriptedEngine, call: int) -> list[tuple[str, str]]:
    model_input = engine.calls[call][1]
    return [(m.role, m.content) for m in model_input.chat.messages]


async def test_a_conversation_spanning_a_swap_carries_its_history_to_the_new_model(
    make_stack: StackFactory,
) -> None:
    engine = ScriptedEngine(("scripted/echo", "scripted/other"), pieces=("ok",))
    stack = await _stack(make_stack, engine)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        first = await gateway.Generate(_turn("my name is Ada", system="be brief"), timeout=10)
        assert (first.model_id, first.history_turns, first.trimmed_turns) == ("scripted/echo", 0, 0)

        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        swap = await hotswap.Swap(
            hotswap_pb2.SwapRequest(alias="chat", target_model_id="scripted/other"), timeout=5
        )
        statuses = [
            s async for s in hotswap.WatchSwap(hotswap_pb2.GetSwapRequest(swap_id=swap.swap_id))
        ]
        assert statuses[-1].phase == Status.PHASE_DONE
        while (await gateway.Generate(_turn("x", conversation="probe"), timeout=5)).model_id != (
            "scripted/other"
        ):
            pass  # until the gateway's copy of the routes has the switch

        second = await gateway.Generate(_turn("what is my name?"), timeout=10)
        third = await gateway.Generate(_turn("and again?"), timeout=10)
    assert (second.model_id, second.history_turns) == ("scripted/other", 1)
    assert third.history_turns == 2
    by_last = {c[1].chat.messages[-1].content: (c[0], i) for i, c in enumerate(engine.calls)}
    assert by_last["what is my name?"][0] == by_last["and again?"][0] == "scripted/other"
    assert _sent(engine, by_last["what is my name?"][1]) == [
        ("system", "be brief"),
        ("user", "my name is Ada"),
        ("assistant", "ok"),
        ("user", "what is my name?"),
    ]
    assert _sent(engine, by_last["and again?"][1]) == [
        ("system", "be brief"),
        ("user", "my name is Ada"),
        ("assistant", "ok"),
        ("user", "what is my name?"),
        ("assistant", "ok"),
        ("user", "and again?"),
    ]


async def test_a_history_longer_than_the_window_is_trimmed_oldest_first_and_says_so(
    make_stack: StackFactory,
) -> None:
    # Each stored turn: a 400-character question and "ok", ~100 + 2*4 tokens.
    turn_tokens = message_tokens([Message(content="q" * 400), Message(content="ok")])
    window = 8 + message_tokens([Message(content="last")]) + 2 * turn_tokens + 4
    engine = ScriptedEngine(pieces=("ok",), context_window=window)
    stack = await _stack(make_stack, engine)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        for i in range(4):
            await gateway.Generate(_turn(f"{i}" + "q" * 399), timeout=10)
        last = await gateway.Generate(_turn("last"), timeout=10)
    assert (last.history_turns, last.trimmed_turns) == (2, 2)
    sent = _sent(engine, len(engine.calls) - 1)
    assert [content[0] for _, content in sent] == ["2", "o", "3", "o", "l"]  # turns 2 and 3 kept


async def test_a_failed_answer_adds_no_turn(make_stack: StackFactory) -> None:
    engine = ScriptedEngine(pieces=("ok",), finish=False)  # every answer is cut
    stack = await _stack(make_stack, engine)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await gateway.Generate(_turn("hello"), timeout=10)
        engine.finish = True
        answered = await gateway.Generate(_turn("hello again"), timeout=10)
    assert answered.history_turns == 0


def test_a_conversation_takes_only_text_or_chat_input(tmp_path: Path) -> None:
    conversations = Conversations(ConversationStore(tmp_path / "c.sqlite3"))
    request = gateway_pb2.GenerateRequest(model="scripted/echo", conversation_id="c1")
    request.input.image.data = b"\x89PNG"
    with pytest.raises(InvalidRequest) as info:
        conversations.with_history(request, common_pb2.ModelEntry(id="scripted/echo"), 8)
    assert info.value.message == "conversation_id takes text or chat input, not image"
    assert info.value.field == "conversation_id"
    conversations.close()


def test_a_text_input_is_a_user_turn_and_a_new_system_message_replaces_the_old(
    tmp_path: Path,
) -> None:
    conversations = Conversations(ConversationStore(tmp_path / "c.sqlite3"))
    model = common_pb2.ModelEntry(id="scripted/echo")
    first = _turn("hi", system="old rules")
    conversations.record(first, conversations.with_history(first, model, 8), "hello")
    text = gateway_pb2.GenerateRequest(model="scripted/echo", conversation_id="c1")
    text.input.text = "plain"
    spliced = conversations.with_history(text, model, 8).request
    assert [(m.role, m.content) for m in spliced.input.chat.messages] == [
        ("system", "old rules"),
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "plain"),
    ]
    renewed = _turn("next", system="new rules")
    context = conversations.with_history(renewed, model, 8)
    conversations.record(renewed, context, "fine")
    later = conversations.with_history(_turn("later"), model, 8).request
    assert later.input.chat.messages[0].content == "new rules"
    conversations.close()
