"""What the gemini engine sends: the URL, the key header and the generateContent body; and
the input it refuses before any call (the fake then saw nothing)."""

from __future__ import annotations

import json

import pytest
from backends.gemini.gemini_engines import STUDIO_ID, collect, studio_engine, text_input
from support.fake_gemini import API_KEY, MODEL, FakeGemini, response

from modelyard.backends.gemini import GeminiEngine, gemini_models_url
from modelyard_client.errors import InvalidRequest, ModelNotFound
from modelyard_client.v1 import common_pb2

DONE = [response("ok", finish="STOP", usage=(3, 1))]


def chat(*messages: tuple[str, str]) -> common_pb2.Input:
    model_input = common_pb2.Input()
    for role, content in messages:
        model_input.chat.messages.add(role=role, content=content)
    return model_input


async def test_text_input_is_one_user_turn_posted_to_stream_generate_content_with_the_key(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(DONE)
    await collect(studio, text_input("Name three rivers."))

    [call] = fake.calls
    assert call.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert call.query == {"alt": "sse"}
    assert call.headers["x-goog-api-key"] == API_KEY
    assert "Authorization" not in call.headers
    assert call.body == {"contents": [{"role": "user", "parts": [{"text": "Name three rivers."}]}]}


async def test_chat_roles_become_user_and_model_turns_and_system_messages_the_instruction(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(DONE)
    model_input = chat(
        ("system", "Be terse."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("system", "Answer in French."),
        ("user", "Bye"),
    )
    await collect(studio, model_input)

    body = fake.calls[0].body
    assert body["systemInstruction"] == {
        "parts": [{"text": "Be terse."}, {"text": "Answer in French."}]
    }
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello."}]},
        {"role": "user", "parts": [{"text": "Bye"}]},
    ]
    assert "generationConfig" not in body  # nothing set, nothing sent


async def test_params_become_the_generation_config(fake: FakeGemini, studio: GeminiEngine) -> None:
    fake.stream(DONE)
    params = common_pb2.GenerationParams(
        max_tokens=42, temperature=0.5, top_p=0.25, top_k=40, stop=["\n\n", "END"], seed=1234
    )
    await collect(studio, params=params)

    assert fake.calls[0].body["generationConfig"] == {
        "maxOutputTokens": 42,
        "temperature": 0.5,
        "topP": 0.25,
        "topK": 40,
        "stopSequences": ["\n\n", "END"],
        "seed": 1234,
    }


async def test_a_response_schema_asks_for_json_output_with_the_schema_as_it_is(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(DONE)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    params = common_pb2.GenerationParams(response_schema_json=json.dumps(schema))
    await collect(studio, params=params)

    config = fake.calls[0].body["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}


async def test_the_key_is_read_on_every_call(fake: FakeGemini) -> None:
    current = [API_KEY]  # what the secret holds now (rotated on SIGHUP)
    engine = studio_engine(fake, lambda: current[0])
    fake.stream(DONE)
    await engine.start()
    try:
        await collect(engine)
        current[0] = fake.api_key = "AIzaSyRotated-key-0123456789abcdefghijk"
        await collect(engine)
    finally:
        await engine.close()
    assert [c.headers["x-goog-api-key"] for c in fake.calls] == [
        API_KEY,
        "AIzaSyRotated-key-0123456789abcdefghijk",
    ]


@pytest.mark.parametrize(
    ("model_input", "params", "field", "words"),
    [
        (
            common_pb2.Input(image=common_pb2.Image(data=b"\x89PNG")),
            common_pb2.GenerationParams(),
            "input",
            "takes text or chat input, not image",
        ),
        (
            chat(("system", "Only rules.")),
            common_pb2.GenerationParams(),
            "input.chat.messages",
            "at least one user or assistant message",
        ),
        (
            chat(("tool", "42")),
            common_pb2.GenerationParams(),
            "input.chat.messages[0].tool_call_id",
            "answers no call of an earlier assistant message",
        ),
        (
            chat(("user", "Hi"), ("assistant", "The answer is")),
            common_pb2.GenerationParams(continue_final_message=True),
            "params.continue_final_message",
            "cannot continue an assistant prefill",
        ),
        (
            text_input(),
            common_pb2.GenerationParams(stop=["a", "b", "c", "d", "e", "f"]),
            "params.stop",
            "at most 5 stop sequences, not 6",
        ),
        (
            text_input(),
            common_pb2.GenerationParams(seed=2**31),
            "params.seed",
            "32-bit seed; 2147483648 is out of range",
        ),
        (
            text_input(),
            common_pb2.GenerationParams(response_schema_json="{not json"),
            "params.response_schema_json",
            "is not JSON",
        ),
        (
            text_input(),
            common_pb2.GenerationParams(response_schema_json="[1, 2]"),
            "params.response_schema_json",
            "must be a JSON Schema object, not a JSON list",
        ),
    ],
)
async def test_what_gemini_cannot_honour_is_refused_before_any_call(
    fake: FakeGemini,
    studio: GeminiEngine,
    model_input: common_pb2.Input,
    params: common_pb2.GenerationParams,
    field: str,
    words: str,
) -> None:
    fake.stream(DONE)
    with pytest.raises(InvalidRequest) as caught:
        await collect(studio, model_input, params)
    assert caught.value.field == field
    assert words in caught.value.message
    assert "'gemini' backend (Gemini)" in caught.value.message
    assert fake.calls == []


async def test_a_message_name_is_refused_naming_the_message(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    model_input = common_pb2.Input()
    model_input.chat.messages.add(role="user", content="Hi")
    model_input.chat.messages.add(role="user", content="Hi", name="ada")
    with pytest.raises(InvalidRequest) as caught:
        await collect(studio, model_input)
    assert caught.value.field == "input.chat.messages[1].name"
    assert fake.calls == []


async def test_a_model_id_that_cannot_name_a_model_is_not_put_in_the_url(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    with pytest.raises(ModelNotFound):
        await collect(studio, model_id="gemini/../../v1/other:method")
    assert fake.calls == []
    assert STUDIO_ID in {e.id for e in studio.models()}


def test_the_gemini_api_is_the_default_and_a_version_in_the_base_url_is_kept() -> None:
    assert gemini_models_url(None) == (
        "https://generativelanguage.googleapis.com",
        "https://generativelanguage.googleapis.com/v1beta/models",
    )
    assert gemini_models_url("http://proxy:8080/") == (
        "http://proxy:8080",
        "http://proxy:8080/v1beta/models",
    )
    assert gemini_models_url("http://proxy:8080/v1")[1] == "http://proxy:8080/v1/models"


@pytest.mark.parametrize("field", ["voice", "audio_format"])
async def test_a_speech_parameter_is_refused_naming_it_the_model_and_gemini(
    fake: FakeGemini, studio: GeminiEngine, field: str
) -> None:
    params = common_pb2.GenerationParams()
    setattr(params, field, "wav")
    with pytest.raises(InvalidRequest) as caught:
        await collect(studio, params=params)
    assert caught.value.field == f"params.{field}"
    assert caught.value.message == (
        f"params.{field} is not supported by model '{STUDIO_ID}' (provider 'gemini', Gemini)"
    )
    assert fake.calls == []


async def test_with_drop_unsupported_params_a_speech_parameter_is_left_out_and_named(
    fake: FakeGemini, studio: GeminiEngine
) -> None:
    fake.stream(DONE)
    params = common_pb2.GenerationParams(
        voice="joe", audio_format="wav", temperature=0.5, drop_unsupported_params=True
    )
    pieces = await collect(studio, params=params)
    assert pieces[-1].dropped_params == ("voice", "audio_format")
    assert fake.calls[0].body["generationConfig"] == {"temperature": 0.5}
    assert "voice" not in json.dumps(fake.calls[0].body)
