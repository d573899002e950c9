"""A text to speech call checked before any voice loads, and the pieces its audio becomes."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path
from typing import Any

import pytest

from modelyard.backends.engine import Piece
from modelyard.backends.speech.piper_voices import PiperVoiceFiles, packaged_voice, read_voice
from modelyard.backends.speech.speech_out import (
    SpeechRequest,
    speech_pieces,
    speech_request,
    wav_file,
)
from modelyard_client.errors import ContextLengthExceeded, InvalidRequest
from modelyard_client.v1 import common_pb2

MODEL = "piper/en_US-joe-medium"


@pytest.fixture(scope="module")
def joe() -> PiperVoiceFiles:
    return packaged_voice()


@pytest.fixture(scope="module")
def choir(tmp_path_factory: pytest.TempPathFactory, joe: PiperVoiceFiles) -> PiperVoiceFiles:
    """A voice configuration of three speakers (the model file is joe's: never run here)."""
    config = joe.config() | {"num_speakers": 3, "speaker_id_map": {"ann": 0, "bob": 1, "cy": 2}}
    folder = tmp_path_factory.mktemp("choir")
    (folder / "choir.onnx").symlink_to(joe.model_path)
    (folder / "choir.onnx.json").write_text(json.dumps(config))
    return read_voice(folder / "choir.onnx")


def _request(
    files: PiperVoiceFiles,
    model_input: common_pb2.Input | None = None,
    max_characters: int = 10_000,
    **params: Any,
) -> SpeechRequest:
    return speech_request(
        model_input or common_pb2.Input(text="Hello there."),
        common_pb2.GenerationParams(**params),
        files,
        MODEL,
        max_characters,
    )


def _chat(*messages: common_pb2.ChatMessage) -> common_pb2.Input:
    return common_pb2.Input(chat=common_pb2.ChatMessages(messages=messages))


def test_the_packaged_voice_is_one_speaker_at_22_050_hz(joe: PiperVoiceFiles) -> None:
    assert (joe.name, joe.sample_rate_hz, joe.language) == ("en_US-joe-medium", 22050, "en_US")
    assert joe.speakers == {"joe": None}


def test_defaults_speak_the_text_stripped_as_one_wav_with_the_default_speaker(
    joe: PiperVoiceFiles,
) -> None:
    request = _request(joe, common_pb2.Input(text="  Hello there.\n"), max_tokens=256)
    assert request == SpeechRequest("Hello there.", "input.text", None, "wav", ())


def test_a_speaker_is_chosen_by_name_and_the_single_speaker_by_its_own(
    joe: PiperVoiceFiles, choir: PiperVoiceFiles
) -> None:
    assert _request(choir, voice="bob").speaker_id == 1
    assert _request(choir).speaker_id is None  # the voice's default speaker
    assert _request(joe, voice="joe", audio_format="pcm").speaker_id is None


@pytest.mark.parametrize(
    ("which", "known"), [("choir", "ann, bob, cy"), ("joe", "joe")], ids=["many", "one"]
)
def test_an_unknown_voice_is_refused_naming_the_voices_there_are(
    which: str, known: str, joe: PiperVoiceFiles, choir: PiperVoiceFiles
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _request(choir if which == "choir" else joe, voice="alice")
    assert refused.value.field == "params.voice"
    assert refused.value.message == (
        f"params.voice 'alice' is not a voice of model '{MODEL}': its voices are {known}"
    )


@pytest.mark.parametrize("audio_format", ["mp3", "WAV", "pcm16"])
def test_an_unknown_audio_format_is_refused_naming_the_formats(
    audio_format: str, joe: PiperVoiceFiles
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _request(joe, audio_format=audio_format)
    assert refused.value.field == "params.audio_format"
    assert refused.value.message == (
        f"params.audio_format {audio_format!r} is not one model '{MODEL}' makes: "
        "wav (the default) or pcm"
    )


@pytest.mark.parametrize(
    ("model_input", "field", "message"),
    [
        (
            common_pb2.Input(text=" \n\t"),
            "input.text",
            f"input.text is empty: model '{MODEL}' has nothing to speak",
        ),
        (
            common_pb2.Input(audio=common_pb2.Audio(data=b"RIFF")),
            "input",
            f"model '{MODEL}' takes text input (MODALITY_TEXT: text to speech), not audio",
        ),
        (
            common_pb2.Input(),
            "input",
            f"model '{MODEL}' takes text input (MODALITY_TEXT: text to speech), not an empty input",
        ),
        (
            _chat(common_pb2.ChatMessage(role="system", content="Speak.")),
            "input.chat",
            f"input.chat has no user message: model '{MODEL}' speaks the last one",
        ),
        (
            _chat(common_pb2.ChatMessage(role="user", content=" ")),
            "input.chat.messages[0].content",
            f"input.chat.messages[0].content is empty: model '{MODEL}' has nothing to speak",
        ),
        (
            _chat(
                common_pb2.ChatMessage(
                    role="user",
                    parts=[
                        common_pb2.ContentPart(text="Look:"),
                        common_pb2.ContentPart(image=common_pb2.Image(url="https://x/y.png")),
                    ],
                )
            ),
            "input.chat.messages[0].parts[1]",
            f"input.chat.messages[0].parts[1] is an image: model '{MODEL}' speaks text only",
        ),
    ],
    ids=["blank", "audio", "empty", "no-user", "blank-user", "image-part"],
)
def test_input_it_cannot_speak_is_refused_naming_the_field(
    model_input: common_pb2.Input, field: str, message: str, joe: PiperVoiceFiles
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        _request(joe, model_input)
    assert (refused.value.field, refused.value.message) == (field, message)


def test_a_chat_speaks_its_last_user_message_its_text_parts_joined(
    joe: PiperVoiceFiles,
) -> None:
    chat = _chat(
        common_pb2.ChatMessage(role="user", content="Not this."),
        common_pb2.ChatMessage(
            role="user",
            parts=[common_pb2.ContentPart(text="Good"), common_pb2.ContentPart(text="night.")],
        ),
        common_pb2.ChatMessage(role="assistant", content="Nor this."),
    )
    request = _request(joe, chat)
    assert (request.text, request.field) == ("Good night.", "input.chat.messages[1].parts")


def test_text_over_max_characters_is_refused_naming_the_key(joe: PiperVoiceFiles) -> None:
    assert _request(joe, common_pb2.Input(text="x" * 12), max_characters=12).text == "x" * 12
    with pytest.raises(ContextLengthExceeded) as refused:
        _request(joe, common_pb2.Input(text="x" * 13), max_characters=12)
    assert refused.value.field == "input.text"
    assert refused.value.message == (
        f"input.text has 13 characters: model '{MODEL}' speaks at most 12 in one call "
        "(its backend's max_characters)"
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (common_pb2.GenerationParams(temperature=0.0), "params.temperature"),
        (common_pb2.GenerationParams(top_p=0.5), "params.top_p"),
        (common_pb2.GenerationParams(top_k=5), "params.top_k"),
        (common_pb2.GenerationParams(seed=0), "params.seed"),
        (common_pb2.GenerationParams(stop=["."]), "params.stop"),
        (common_pb2.GenerationParams(response_schema_json="{}"), "params.response_schema_json"),
        (
            common_pb2.GenerationParams(continue_final_message=True),
            "params.continue_final_message",
        ),
    ],
)
def test_a_parameter_piper_cannot_honour_is_refused_naming_it(
    params: common_pb2.GenerationParams, field: str, joe: PiperVoiceFiles
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        speech_request(common_pb2.Input(text="Hi."), params, joe, MODEL, 100)
    assert refused.value.field == field
    assert refused.value.message == (
        f"{field} is not supported by model '{MODEL}' (piper, text to speech)"
    )


def test_with_drop_unsupported_params_they_are_listed_not_refused(joe: PiperVoiceFiles) -> None:
    request = _request(joe, top_k=3, temperature=0.5, stop=["x"], drop_unsupported_params=True)
    assert request.dropped == ("temperature", "top_k", "stop")


BLOCKS = (b"\x01\x00\x02\x00", b"", b"\x03\x00\x04\x00\x05\x00")  # 2, 0 and 3 samples


def test_wav_is_one_file_whole_on_the_finish_with_characters_and_seconds() -> None:
    request = SpeechRequest("Hi. Bye.", "input.text", None, "wav", ("top_k",))
    [finish] = list(speech_pieces(BLOCKS, request, 10, MODEL))
    assert finish.finish_reason == common_pb2.FINISH_REASON_STOP
    assert (finish.characters, finish.audio_seconds) == (8, 0.5)  # 5 samples at 10 Hz
    assert finish.dropped_params == ("top_k",)
    assert finish.output is not None
    audio = finish.output.audio
    assert (audio.mime_type, audio.sample_rate_hz) == ("audio/wav", 10)
    with wave.open(io.BytesIO(audio.data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 10)
        assert wav.readframes(wav.getnframes()) == b"".join(BLOCKS)
    assert audio.data == wav_file(BLOCKS, 10)


def test_pcm_is_one_piece_per_sentence_as_made_then_the_finish() -> None:
    request = SpeechRequest("Hi. Bye.", "input.text", None, "pcm", ())
    pieces = list(speech_pieces(BLOCKS, request, 10, MODEL))

    def pcm(data: bytes) -> Piece:
        audio = common_pb2.Audio(data=data, mime_type="audio/pcm", sample_rate_hz=10)
        return Piece("", output=common_pb2.Output(audio=audio))

    assert pieces == [
        pcm(BLOCKS[0]),
        pcm(BLOCKS[2]),  # an empty block is no piece
        Piece("", common_pb2.FINISH_REASON_STOP, characters=8, audio_seconds=0.5),
    ]


@pytest.mark.parametrize("audio_format", ["wav", "pcm"])
def test_text_that_makes_no_sound_is_refused(audio_format: str) -> None:
    request = SpeechRequest("...", "input.text", None, audio_format, ())
    with pytest.raises(InvalidRequest) as refused:
        list(speech_pieces([b""], request, 22050, MODEL))
    assert refused.value.field == "input.text"
    assert refused.value.message == (
        f"input.text has nothing model '{MODEL}' can speak: '...' makes no sound"
    )


def test_a_folder_of_voices_reads_each_configuration(tmp_path: Path, joe: PiperVoiceFiles) -> None:
    (tmp_path / "broken.onnx.json").write_text("{}")
    voice = read_voice(joe.model_path, joe.config_path)
    assert voice == joe
    with pytest.raises(ValueError, match="not a Piper voice configuration"):
        read_voice(tmp_path / "broken.onnx")
