"""The request the anthropic engine sends: its path, headers and Messages API body."""

from __future__ import annotations

import pytest
from backends.anthropic.anthropic_calls import (
    chat_input,
    collect,
    endpoint_of,
    params,
    text_input,
)
from support.fake_anthropic import API_KEY, FakeAnthropic

from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard_client.errors import ProviderAuthFailed


async def test_text_is_one_user_turn_with_the_required_headers(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    await collect(engine, text_input("Say hi"), params(max_tokens=32))
    [call] = fake.received
    assert call.body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}],
        "stream": True,
    }
    assert call.headers["x-api-key"] == API_KEY
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in call.headers  # the key goes in x-api-key only


async def test_system_messages_become_the_top_level_system_field(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    model_input = chat_input(
        ("system", "Be brief."),
        ("user", "Hi"),
        ("system", "Answer in English."),
        ("assistant", "Hello!"),
        ("user", "Bye"),
    )
    await collect(engine, model_input)
    body = fake.received[0].body
    assert body["system"] == "Be brief.\n\nAnswer in English."
    assert [(m["role"], [b["text"] for b in m["content"]]) for m in body["messages"]] == [
        ("user", ["Hi"]),
        ("assistant", ["Hello!"]),
        ("user", ["Bye"]),
    ]


async def test_consecutive_messages_of_one_role_become_one_turn(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    await collect(engine, chat_input(("user", "First."), ("user", "Second."), ("assistant", "Ok")))
    assert fake.received[0].body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "First."}, {"type": "text", "text": "Second."}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Ok"}]},
    ]


async def test_sampling_parameters_and_stop_sequences(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    generation = params(max_tokens=100, temperature=0.5, top_p=0.25, top_k=40, stop=["\n\n", "END"])
    await collect(engine, text_input(), generation)
    body = fake.received[0].body
    assert (body["temperature"], body["top_p"], body["top_k"]) == (0.5, 0.25, 40)
    assert body["stop_sequences"] == ["\n\n", "END"]
    assert "seed" not in body and "stop" not in body


async def test_unset_parameters_are_not_sent(fake: FakeAnthropic, engine: AnthropicEngine) -> None:
    await collect(engine, text_input(), params())
    assert set(fake.received[0].body) == {"model", "max_tokens", "messages", "stream"}


async def test_a_json_schema_goes_in_output_config(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    schema = '{"type": "object", "properties": {"a": {"type": "string"}}}'
    await collect(engine, text_input(), params(response_schema_json=schema))
    assert fake.received[0].body["output_config"] == {
        "format": {
            "type": "json_schema",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}},
        }
    }


async def test_continue_final_message_sends_the_prefill_last_and_right_trimmed(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.reply(" world.")
    model_input = chat_input(("user", "Greet"), ("assistant", "Hello \n"))
    pieces = await collect(engine, model_input, params(continue_final_message=True))
    assert fake.received[0].body["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello"}],  # the API refuses trailing whitespace
    }
    assert "".join(p.text for p in pieces) == " world."  # only what follows the prefill


async def test_an_empty_final_assistant_message_is_left_out(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    await collect(engine, chat_input(("user", "Hi"), ("assistant", "  ")))
    assert [m["role"] for m in fake.received[0].body["messages"]] == ["user"]


async def test_the_key_is_read_on_every_call(fake: FakeAnthropic) -> None:
    keys = iter(["sk-ant-first", API_KEY])
    served = AnthropicEngine(endpoint_of(fake, current_key=lambda: next(keys)))
    await served.start()
    try:
        with pytest.raises(ProviderAuthFailed, match="HTTP 401"):
            await collect(served)
        await collect(served)  # the rotated key, from the next call on
    finally:
        await served.close()
    assert [c.headers["x-api-key"] for c in fake.received] == ["sk-ant-first", API_KEY]


async def test_the_model_name_sent_is_the_apis_not_the_catalog_id(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    await collect(engine, model_id="claude/claude-sonnet-4-5")
    assert fake.received[0].body["model"] == "claude-sonnet-4-5"
