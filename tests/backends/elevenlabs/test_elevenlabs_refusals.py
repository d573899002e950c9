"""What ElevenLabs cannot take is refused before any call, naming the field (request.py)."""

from __future__ import annotations

import pytest
from backends.elevenlabs.calls import KEY, MODEL, NAME, collect, params
from support.fake_elevenlabs import FakeElevenLabs

from modelyard.backends.elevenlabs.engine import ElevenLabsEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.errors import ContextLengthExceeded, InvalidRequest
from modelyard_client.v1 import common_pb2


async def _refused(
    elevenlabs: FakeElevenLabs,
    engine: ElevenLabsEngine,
    model_input: common_pb2.Input | None = None,
    generation: common_pb2.GenerationParams | None = None,
) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        await collect(engine, model_input, generation)
    assert elevenlabs.calls == 0  # refused before anything was sent
    return caught.value


async def test_no_voice_is_refused_naming_params_voice(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    error = await _refused(elevenlabs, engine, generation=common_pb2.GenerationParams())
    assert error.field == "params.voice"
    assert "ElevenLabs needs a voice id" in error.message


async def test_an_unknown_audio_format_is_refused_with_those_there_are(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    error = await _refused(elevenlabs, engine, generation=params(audio_format="ogg"))
    assert error.field == "params.audio_format"
    assert error.message == ("params.audio_format 'ogg' is not one ElevenLabs makes: wav, pcm, mp3")


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"temperature": 0.7}, "temperature"),
        ({"top_p": 0.9}, "top_p"),
        ({"top_k": 40}, "top_k"),
        ({"stop": ["\n"]}, "stop"),
        ({"response_schema_json": '{"type": "object"}'}, "response_schema_json"),
        ({"continue_final_message": True}, "continue_final_message"),
    ],
)
async def test_a_parameter_speech_has_no_use_for_is_refused(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine, fields: dict[str, object], name: str
) -> None:
    error = await _refused(elevenlabs, engine, generation=params(**fields))
    assert error.field == f"params.{name}"
    assert error.message == (
        f"params.{name} is not supported by model '{MODEL}' (ElevenLabs, text to speech)"
    )


async def test_max_tokens_is_not_refused(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    pieces = await collect(engine, generation=params(max_tokens=16))
    assert pieces[-1].dropped_params == ()
    assert elevenlabs.calls == 1


@pytest.mark.parametrize("seed", [-1, 4_294_967_296])
async def test_a_seed_outside_elevenlabs_range_is_refused(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine, seed: int
) -> None:
    error = await _refused(elevenlabs, engine, generation=params(seed=seed))
    assert error.field == "params.seed"
    assert "from 0 to 4294967295" in error.message


@pytest.mark.parametrize("text", ["", "  \n"])
async def test_no_text_to_speak_is_refused(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine, text: str
) -> None:
    error = await _refused(elevenlabs, engine, common_pb2.Input(text=text))
    assert error.field == "input.text"
    assert error.message == f"input.text is empty: model '{MODEL}' has nothing to speak"


async def test_a_chat_without_a_user_message_is_refused(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    chat = common_pb2.Input()
    chat.chat.messages.add(role="system", content="Speak.")
    error = await _refused(elevenlabs, engine, chat)
    assert error.field == "input.chat"


async def test_an_empty_last_user_message_is_refused_naming_it(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    chat = common_pb2.Input()
    chat.chat.messages.add(role="user", content="Earlier.")
    chat.chat.messages.add(role="user", content="")
    error = await _refused(elevenlabs, engine, chat)
    assert error.field == "input.chat.messages[1].content"


async def test_an_image_part_is_refused_naming_it(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    chat = common_pb2.Input()
    message = chat.chat.messages.add(role="user")
    message.parts.add(text="Read this:")
    message.parts.add().image.url = "https://example.com/a.png"
    error = await _refused(elevenlabs, engine, chat)
    assert error.field == "input.chat.messages[0].parts[1]"


async def test_audio_input_is_refused(elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine) -> None:
    model_input = common_pb2.Input()
    model_input.audio.data = b"RIFF"
    error = await _refused(elevenlabs, engine, model_input)
    assert error.field == "input"
    assert "not audio" in error.message


async def test_text_over_the_model_s_character_limit_is_refused(elevenlabs: FakeElevenLabs) -> None:
    engine = ElevenLabsEngine(ProviderEndpoint("elevenlabs", f"{elevenlabs.url}/v1", api_key=KEY))
    await engine.start()  # the catalog's models: multilingual v2 speaks 10,000 per request
    try:
        with pytest.raises(ContextLengthExceeded) as caught:
            await collect(engine, common_pb2.Input(text="a" * 10_001))
        await collect(engine, common_pb2.Input(text="a" * 10))
    finally:
        await engine.close()
    assert caught.value.field == "input.text"
    assert caught.value.message == (
        f"input.text has 10,001 characters: ElevenLabs model {NAME} speaks at most 10,000 in "
        "one request"
    )
    assert elevenlabs.calls == 1  # only the short one was sent
