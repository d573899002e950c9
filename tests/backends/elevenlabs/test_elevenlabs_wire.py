"""What the elevenlabs engine sends to ElevenLabs, and the audio it makes of the answer."""

from __future__ import annotations

import struct

import pytest
from backends.elevenlabs.calls import (
    KEY,
    MODEL,
    NAME,
    TEXT,
    VOICE,
    audio_of,
    collect,
    params,
    wav_frames,
)
from support.fake_elevenlabs import SECONDS_PER_CHARACTER, FakeElevenLabs

from modelyard.backends.elevenlabs.engine import ElevenLabsEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.v1 import common_pb2


async def test_the_request_carries_key_voice_format_text_and_model(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    await collect(engine, generation=params(seed=42))
    assert elevenlabs.calls == 1
    assert elevenlabs.headers[0]["xi-api-key"] == KEY
    assert "Authorization" not in elevenlabs.headers[0]
    assert elevenlabs.voice_ids == [VOICE]
    assert elevenlabs.queries == [{"output_format": "pcm_24000"}]
    assert elevenlabs.bodies == [{"text": TEXT, "model_id": NAME, "seed": 42}]


async def test_wav_is_one_whole_file_on_the_last_piece(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    pieces = await collect(engine)  # audio_format "": WAV
    *before, last = pieces
    assert all(p.output is None and p.finish_reason == 0 for p in before)
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert last.output is not None
    audio = last.output.audio
    assert (audio.mime_type, audio.sample_rate_hz) == ("audio/wav", 24000)
    [pcm] = elevenlabs.sent
    assert audio.data[:4] == b"RIFF" and audio.data[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", audio.data[4:8])[0] == len(audio.data) - 8
    assert audio.data[36:40] == b"data"
    assert struct.unpack("<I", audio.data[40:44])[0] == len(pcm)
    assert wav_frames(audio.data) == (1, 2, 24000, pcm)
    assert last.characters == len(TEXT)
    assert last.audio_seconds == pytest.approx(len(pcm) / 2 / 24000)
    assert last.audio_seconds == pytest.approx(len(TEXT) * SECONDS_PER_CHARACTER, abs=1e-4)
    assert (last.input_tokens, last.output_tokens, last.dropped_params) == (0, 0, ())


async def test_pcm_streams_whole_samples_as_they_arrive(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    pieces = await collect(engine, generation=params(audio_format="pcm"))
    audio = [p for p in pieces if p.output is not None]
    assert len(audio) > 3  # the fake sends 4097-byte chunks: each read is a piece
    for p in audio:
        assert p.output is not None
        assert (p.output.audio.mime_type, p.output.audio.sample_rate_hz) == ("audio/pcm", 24000)
        assert len(p.output.audio.data) % 2 == 0  # a sample split by a read is carried over
    assert audio_of(pieces) == elevenlabs.sent[0]
    last = pieces[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert last.audio_seconds == pytest.approx(len(elevenlabs.sent[0]) / 2 / 24000)
    assert last.characters == len(TEXT)
    assert elevenlabs.queries[0]["output_format"] == "pcm_24000"


async def test_mp3_streams_as_it_came(elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine) -> None:
    pieces = await collect(engine, generation=params(audio_format="mp3"))
    assert elevenlabs.queries[0]["output_format"] == "mp3_44100_128"
    audio = [p for p in pieces if p.output is not None]
    assert len(audio) > 1
    assert {
        (p.output.audio.mime_type, p.output.audio.sample_rate_hz) for p in audio if p.output
    } == {("audio/mpeg", 44100)}
    assert audio_of(pieces) == elevenlabs.sent[0]
    assert pieces[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    assert pieces[-1].audio_seconds == 0.0  # not known from MP3 bytes alone
    assert pieces[-1].characters == len(TEXT)


async def test_a_chat_speaks_its_last_user_message(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    chat = common_pb2.Input()
    chat.chat.messages.add(role="system", content="Speak slowly.")
    chat.chat.messages.add(role="user", content="First line.")
    chat.chat.messages.add(role="assistant", content="Said.")
    chat.chat.messages.add(role="user", content="Second line.")
    chat.chat.messages.add(role="assistant", content="")
    pieces = await collect(engine, chat)
    assert elevenlabs.bodies[0]["text"] == "Second line."
    assert pieces[-1].characters == len("Second line.")


async def test_a_message_s_text_parts_are_spoken_joined_by_spaces(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    chat = common_pb2.Input()
    message = chat.chat.messages.add(role="user")
    message.parts.add(text="Hello,")
    message.parts.add(text="world.")
    await collect(engine, chat)
    assert elevenlabs.bodies[0]["text"] == "Hello, world."


async def test_dropped_parameters_are_left_out_and_listed(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    generation = params(temperature=0.3, top_k=5, stop=["."], drop_unsupported_params=True)
    generation.max_tokens = 64  # no meaning for speech: neither sent nor listed
    pieces = await collect(engine, generation=generation)
    assert pieces[-1].dropped_params == ("temperature", "top_k", "stop")
    assert elevenlabs.bodies == [{"text": TEXT, "model_id": NAME}]


async def test_a_voice_id_cannot_leave_its_path_segment(
    elevenlabs: FakeElevenLabs, engine: ElevenLabsEngine
) -> None:
    elevenlabs.voices.add("../../v1/user?x=1")
    await collect(engine, generation=params(voice="../../v1/user?x=1"))
    assert elevenlabs.voice_ids == ["../../v1/user?x=1"]  # arrived whole, as one segment


async def test_a_rotated_key_is_sent_from_the_next_call(elevenlabs: FakeElevenLabs) -> None:
    current = {"key": "xi-old"}
    elevenlabs.api_keys = {"xi-old", "xi-new"}
    engine = ElevenLabsEngine(
        ProviderEndpoint(
            "elevenlabs",
            f"{elevenlabs.url}/v1",
            api_key="xi-configured",
            models=(NAME,),
            current_key=lambda: current["key"],
        )
    )
    await engine.start()
    try:
        await collect(engine)
        current["key"] = "xi-new"
        await collect(engine)
    finally:
        await engine.close()
    assert [h["xi-api-key"] for h in elevenlabs.headers] == ["xi-old", "xi-new"]


async def test_models_are_the_catalog_s_speech_models_with_their_limits(
    elevenlabs: FakeElevenLabs,
) -> None:
    engine = ElevenLabsEngine(ProviderEndpoint("voice", f"{elevenlabs.url}/v1", api_key=KEY))
    await engine.start()
    try:
        entries = {e.id: e for e in engine.models()}
        assert engine.health().status == common_pb2.HEALTH_STATUS_HEALTHY
    finally:
        await engine.close()
    # scribe_v1 (speech to text) is not one: this engine speaks
    assert set(entries) == {"voice/eleven_multilingual_v2", "voice/eleven_flash_v2_5"}
    entry = entries["voice/eleven_flash_v2_5"]
    assert entry.context_window == 40000
    assert list(entry.capabilities) == [
        common_pb2.CAPABILITY_TEXT_TO_SPEECH,
        common_pb2.CAPABILITY_STREAMING,
    ]
    assert list(entry.input_modalities) == [common_pb2.MODALITY_TEXT]
    assert list(entry.output_modalities) == [common_pb2.MODALITY_AUDIO]
    assert entry.metadata["input_unit"] == "character"
    assert MODEL not in entries  # another backend name, other ids


async def test_load_and_unload_check_the_id(engine: ElevenLabsEngine) -> None:
    assert await engine.load(MODEL) >= 0
    assert await engine.unload(MODEL) is False
    assert engine.serves(MODEL) and not engine.serves("elevenlabs/eleven_v9")
