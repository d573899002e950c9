"""An engine that does not send tools is refused them by its host, naming the parameter and
the engine, rather than answering as if they had not been offered (backends/host.py)."""

from __future__ import annotations

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.engine import takes_tools, uses_tools
from modelyard.backends.host import BackendHost
from modelyard.backends.openai_compat.engine import OpenAICompatEngine
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2


def _chat() -> common_pb2.Input:
    model_input = common_pb2.Input()
    model_input.chat.messages.add(role="user", content="Weather?")
    return model_input


def test_a_request_uses_tools_when_it_offers_them_or_carries_tool_turns() -> None:
    plain = common_pb2.GenerationParams()
    assert not uses_tools(_chat(), plain)
    assert uses_tools(
        _chat(), common_pb2.GenerationParams(tools=[common_pb2.ToolDefinition(name="t")])
    )
    assert uses_tools(_chat(), common_pb2.GenerationParams(tool_choice="none"))
    turns = _chat()
    turns.chat.messages.add(role="tool", tool_call_id="call_1", content="-3 C")
    assert uses_tools(turns, plain)


def test_only_an_engine_that_says_so_takes_tools() -> None:
    assert takes_tools(OpenAICompatEngine) and not takes_tools(ScriptedEngine())


async def test_an_engine_without_tools_is_refused_them_before_it_is_called() -> None:
    engine = ScriptedEngine()
    host = BackendHost([engine])
    params = common_pb2.GenerationParams(tools=[common_pb2.ToolDefinition(name="get_weather")])
    with pytest.raises(InvalidRequest) as info:
        host.infer_stream("scripted/echo", _chat(), params)
    assert info.value.field == "params.tools"
    assert info.value.message == (
        "params.tools: the scripted engine of backend 'scripted' does not send tools to its "
        "models yet ('scripted/echo')"
    )
    assert engine.calls == []
    pieces = [
        p async for p in host.infer_stream("scripted/echo", _chat(), common_pb2.GenerationParams())
    ]
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_STOP
