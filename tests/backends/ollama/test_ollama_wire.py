"""What the Ollama engine sends to /api/chat and /api/generate, and how it streams the answer
back."""

from __future__ import annotations

import asyncio
import json

import pytest
from backends.ollama.calls import MODEL, chat_input, collect, text_input
from backends.ollama.conftest import EngineFor
from support.fake_ollama import FakeOllama, Reply

from modelyard.backends.engine import Piece
from modelyard.backends.ollama.engine import OllamaEngine
from modelyard_client.v1 import common_pb2


async def test_text_input_is_a_completion_prompt_with_every_param_in_options(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    params = common_pb2.GenerationParams(
        max_tokens=42, temperature=0.5, top_p=0.25, top_k=40, seed=1234, stop=["\n\n", "END"]
    )
    daemon.reply(Reply(texts=["Nile", ", Amazon"], prompt_eval_count=8, eval_count=2))
    pieces = await collect(engine, text_input("Name three rivers."), params)

    assert daemon.chats() == []
    [body] = daemon.completions()
    assert body["model"] == "gemma3:270m"  # the daemon's name, not the catalog id
    assert body["prompt"] == "Name three rivers."
    assert "messages" not in body and "tools" not in body
    assert body["options"] == {
        "num_predict": 42,
        "temperature": 0.5,
        "top_p": 0.25,
        "top_k": 40,
        "seed": 1234,
        "stop": ["\n\n", "END"],
    }
    assert body["stream"] is True
    assert body["keep_alive"] == 300.0  # backends.<name>.keep_alive's default
    assert "format" not in body
    assert [p.text for p in pieces] == ["Nile", ", Amazon", ""]  # `response`, line by line
    last = pieces[-1]
    assert (last.finish_reason, last.input_tokens, last.output_tokens) == (
        common_pb2.FINISH_REASON_STOP,
        8,
        2,
    )


async def test_text_input_offered_tools_is_one_user_message_on_api_chat(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    params = common_pb2.GenerationParams()
    params.tools.add(name="get_weather", parameters_json='{"type": "object"}')
    await collect(engine, text_input("Weather in Paris?"), params, model_id="ollama/qwen3:8b")
    assert daemon.completions() == []  # /api/generate has no tools
    [body] = daemon.chats()
    assert body["messages"] == [{"role": "user", "content": "Weather in Paris?"}]
    assert body["tools"][0]["function"]["name"] == "get_weather"


async def test_chat_keeps_roles_and_order_a_tool_name_is_tool_name_and_unset_params_stay_unsent(
    daemon: FakeOllama, engine_for: EngineFor
) -> None:
    engine = await engine_for(keep_alive_s=600.0)
    model_input = chat_input(
        ("system", "Be terse."),
        ("user", "Weather in Paris?"),
        ("tool", "12 C", "get_weather"),
        ("user", "And so?"),
    )
    await collect(engine, model_input)

    [body] = daemon.chats()
    assert body["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "tool", "content": "12 C", "tool_name": "get_weather"},
        {"role": "user", "content": "And so?"},
    ]
    assert "options" not in body
    assert body["keep_alive"] == 600.0


async def test_a_response_schema_is_sent_as_the_format(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    params = common_pb2.GenerationParams(response_schema_json=json.dumps(schema))
    await collect(engine, text_input(), params)
    await collect(engine, chat_input(("user", "How old?")), params)
    assert daemon.completions()[0]["format"] == schema
    assert daemon.chats()[0]["format"] == schema


async def test_a_trailing_assistant_message_is_sent_as_it_stands_to_be_continued(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    model_input = chat_input(("user", "Count to five."), ("assistant", "1, 2, 3"))
    await collect(engine, model_input, common_pb2.GenerationParams(continue_final_message=True))
    assert daemon.chats()[0]["messages"][-1] == {"role": "assistant", "content": "1, 2, 3"}


async def test_the_answer_streams_line_by_line_and_ends_with_the_reason_and_the_counts(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.reply(Reply(texts=["The ", "Nile", "."], prompt_eval_count=17, eval_count=3))
    pieces = await collect(engine)
    assert pieces == [
        Piece("The "),
        Piece("Nile"),
        Piece("."),
        Piece("", common_pb2.FINISH_REASON_STOP, input_tokens=17, output_tokens=3),
    ]


async def test_an_answer_cut_by_num_predict_finishes_with_length(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.reply(Reply(texts=["a", "b", "c", "d"], eval_count=4))
    pieces = await collect(engine, params=common_pb2.GenerationParams(max_tokens=2))
    assert "".join(p.text for p in pieces) == "ab"
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert pieces[-1].output_tokens == 2


async def test_without_counts_each_streamed_line_counts_as_one_output_token(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.reply(Reply(texts=["x", "y", "z"], prompt_eval_count=None, eval_count=None))
    last = (await collect(engine))[-1]
    assert (last.input_tokens, last.output_tokens) == (0, 3)


async def test_the_official_client_talks_to_the_daemon(
    daemon: FakeOllama, engine_for: EngineFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)  # the client would send it
    engine = await engine_for()
    await collect(engine)
    headers = daemon.received[0].headers
    assert headers["User-Agent"].startswith("ollama-python/")
    assert headers["Content-Type"] == "application/json"
    assert "Authorization" not in headers


async def test_a_model_pulled_after_start_is_served_under_the_backend_name(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    assert engine.serves("ollama/pulled-later:1b")
    assert not engine.serves("other/gemma3:270m")
    await collect(engine, model_id="ollama/llava:7b")
    assert daemon.completions()[0]["model"] == "llava:7b"


async def test_an_answer_abandoned_midway_drops_its_connection_at_once(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.reply(Reply(texts=["tick"] * 200, pause_s=0.01))
    stream = engine.infer_stream(MODEL, text_input(), common_pb2.GenerationParams())
    assert (await anext(stream)).text == "tick"
    await stream.aclose()
    for _ in range(100):
        if daemon.hung_up:
            break
        await asyncio.sleep(0.01)
    assert daemon.hung_up == 1  # the daemon saw the hang-up, long before its 200 lines
    assert engine.admission.running == 0  # and the slot is free again
