"""What Anthropic's Messages API cannot take is refused before any call: the fake sees nothing."""

from __future__ import annotations

import pytest
from backends.anthropic.anthropic_calls import chat_input, collect, params, text_input
from support.fake_anthropic import FakeAnthropic

from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard_client.errors import InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2


@pytest.mark.parametrize(
    ("model_input", "generation", "field", "says"),
    [
        (
            text_input(),
            params(seed=7),
            "params.seed",
            "params.seed is not supported by model 'claude/claude-haiku-4-5' "
            "(provider 'claude', Anthropic's Messages API)",
        ),
        (text_input(), params(voice="joe"), "params.voice", "(provider 'claude', Anthropic's"),
        (
            text_input(),
            params(audio_format="wav"),
            "params.audio_format",
            "(provider 'claude', Anthropic's",
        ),
        (
            text_input(),
            params(temperature=1.5),
            "params.temperature",
            "Anthropic's Messages API takes 0 to 1, not 1.5",
        ),
        (text_input(), params(max_tokens=0), "params.max_tokens", "requires max_tokens"),
        (
            chat_input(("user", "Hi"), ("tool", "42")),
            params(),
            "input.chat.messages[1].tool_call_id",
            "is a tool result without tool_call_id",
        ),
        (
            chat_input(("user", "Hi"), ("narrator", "Once")),
            params(),
            "input.chat.messages[1].role",
            "takes system, user, assistant and tool messages, not 'narrator'",
        ),
        (
            common_pb2.Input(image=common_pb2.Image(data=b"\x89PNG", mime_type="image/png")),
            params(),
            "input",
            "takes text or chat input, not image",
        ),
        (text_input("   "), params(), "input.text", "not empty or only whitespace"),
        (
            chat_input(("user", ""), ("assistant", "ok"), ("user", "go")),
            params(),
            "input.chat.messages[0].content",
            "not empty or only whitespace",
        ),
        (
            chat_input(("system", "Be brief.")),
            params(),
            "input.chat",
            "needs at least one user message",
        ),
        (
            chat_input(("user", "Hi")),
            params(continue_final_message=True),
            "params.continue_final_message",
            "does not end with an assistant message",
        ),
        (
            text_input(),
            params(response_schema_json="{not json"),
            "params.response_schema_json",
            "is not JSON",
        ),
        (
            text_input(),
            params(response_schema_json="[1]"),
            "params.response_schema_json",
            "must be a JSON schema object",
        ),
    ],
)
async def test_refused_before_any_call(
    fake: FakeAnthropic,
    engine: AnthropicEngine,
    model_input: common_pb2.Input,
    generation: common_pb2.GenerationParams,
    field: str,
    says: str,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, generation)
    assert caught.value.field == field
    assert says in caught.value.message
    assert fake.received == []


async def test_a_message_name_is_refused(fake: FakeAnthropic, engine: AnthropicEngine) -> None:
    model_input = common_pb2.Input()
    model_input.chat.messages.add(role="user", content="Hi", name="alice")
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.name: .* takes no message names"):
        await collect(engine, model_input)
    assert fake.received == []


async def test_a_model_of_another_backend_is_not_found_here(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    with pytest.raises(ModelNotFound):
        await collect(engine, model_id="openai/gpt-5")
    assert fake.received == []


async def test_with_drop_unsupported_params_they_are_left_out_and_named(
    fake: FakeAnthropic, engine: AnthropicEngine
) -> None:
    fake.reply("Hi", input_tokens=3, output_tokens=1)
    generation = params(seed=7, voice="joe", temperature=0.5, drop_unsupported_params=True)
    pieces = await collect(engine, text_input(), generation)
    assert pieces[-1].dropped_params == ("seed", "voice")  # the proto's order
    assert [p.dropped_params for p in pieces[:-1]] == [()] * (len(pieces) - 1)
    [sent] = fake.received
    assert "seed" not in sent.body and "voice" not in sent.body
    assert sent.body["temperature"] == 0.5  # what it can honour is still sent
