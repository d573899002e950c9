"""What Cohere cannot honour is refused before anything is sent (request.py)."""

from __future__ import annotations

import pytest
from backends.cohere.calls import collect
from support.fake_cohere import FakeCohere, message_end, stream_events

from modelyard.backends.cohere.engine import CohereEngine
from modelyard_client.errors import InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2


def _chat(role: str = "user", name: str = "") -> common_pb2.Input:
    model_input = common_pb2.Input()
    model_input.chat.messages.add(role="system", content="Be terse.")
    model_input.chat.messages.add(role=role, content="Hi", name=name)
    return model_input


def _params(**fields: object) -> common_pb2.GenerationParams:
    return common_pb2.GenerationParams(max_tokens=16, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model_input", "params", "field", "message"),
    [
        (
            None,
            _params(continue_final_message=True),
            "params.continue_final_message",
            "params.continue_final_message: Cohere's Chat v2 API cannot continue an "
            "assistant prefill",
        ),
        (
            None,
            _params(top_p=1.0),
            "params.top_p",
            "params.top_p: Cohere takes p from 0.01 to 0.99, not 1",
        ),
        (
            None,
            _params(top_k=501),
            "params.top_k",
            "params.top_k: Cohere takes k from 0 to 500, not 501",
        ),
        (
            None,
            _params(stop=["a", "b", "c", "d", "e", "f"]),
            "params.stop",
            "params.stop: Cohere takes at most 5 stop sequences, not 6",
        ),
        (
            None,
            _params(response_schema_json='["not", "an object"]'),
            "params.response_schema_json",
            "params.response_schema_json: Cohere takes a JSON schema object",
        ),
        (
            _chat(name="ada"),
            _params(),
            "input.chat.messages[1].name",
            "input.chat.messages[1].name: Cohere's chat messages have no name",
        ),
        (
            _chat(role="tool"),
            _params(),
            "input.chat.messages[1].tool_call_id",
            "input.chat.messages[1] is a tool result without tool_call_id: name the call it "
            "answers",
        ),
        (
            _chat(role="narrator"),
            _params(),
            "input.chat.messages[1].role",
            "input.chat.messages[1].role: Cohere takes system, user, assistant, tool messages, "
            "not 'narrator'",
        ),
        (
            None,
            _params(voice="joe"),
            "params.voice",
            "params.voice is not supported by model 'cohere/command-a-03-2025' "
            "(provider 'cohere', Cohere's Chat v2 API)",
        ),
        (
            None,
            _params(audio_format="pcm"),
            "params.audio_format",
            "params.audio_format is not supported by model 'cohere/command-a-03-2025' "
            "(provider 'cohere', Cohere's Chat v2 API)",
        ),
        (
            common_pb2.Input(image=common_pb2.Image(url="https://example.com/a.png")),
            _params(),
            "input",
            "input: Cohere's chat models take text or chat input, not image",
        ),
    ],
)
async def test_what_cohere_cannot_take_is_refused_naming_it_before_any_call(
    cohere: FakeCohere,
    engine: CohereEngine,
    model_input: common_pb2.Input | None,
    params: common_pb2.GenerationParams,
    field: str,
    message: str,
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, params)
    assert (caught.value.field, caught.value.message) == (field, message)
    assert cohere.bodies == []  # the fake saw nothing


async def test_p_at_cohere_s_bounds_is_taken_though_float32_rounds_it(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    await collect(engine, params=_params(top_p=0.99))
    await collect(engine, params=_params(top_p=0.01))
    assert [round(b["p"], 6) for b in cohere.bodies] == [0.99, 0.01]


async def test_a_model_the_engine_does_not_serve_is_not_found_before_any_call(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    with pytest.raises(ModelNotFound):
        async for _ in engine.infer_stream(
            "cohere/unknown", common_pb2.Input(text="hi"), _params()
        ):
            pass
    assert cohere.bodies == []


async def test_a_speech_parameter_is_dropped_and_named_when_allowed(
    cohere: FakeCohere, engine: CohereEngine
) -> None:
    cohere.answer(stream_events(["Hi"], message_end(billed=(3, 1))))
    pieces = await collect(
        engine, None, _params(voice="joe", audio_format="pcm", drop_unsupported_params=True)
    )
    assert pieces[-1].dropped_params == ("voice", "audio_format")
    [body] = cohere.bodies
    assert "voice" not in body and "audio_format" not in body
