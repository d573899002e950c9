"""End to end through a real gateway: Piper speaks, Whisper hears it back, selection alone
routes each (no model named), and bad calls are refused naming the field."""

from __future__ import annotations

import io
import wave
from typing import Any

import grpc
import pytest
from backends.speech.speech_audio import SENTENCE, WORDS, make_wav, missed
from conftest import StackFactory
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.config import parse_config
from modelyard_client.errors import InvalidRequest, error_from_rpc
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc, selector_pb2

CONFIG = """
model_system:
  backends:
    voice: {kind: piper}
    speech: {kind: whisper, beam_size: 1}
"""
PIPER = "voice/en_US-joe-medium"
WHISPER = "speech/whisper-tiny.en"
RATE = 22050
TWO_SENTENCES = "Turn left at the old bridge. Then walk straight on to the harbor."
ROLES = ("registry", "selector", "gateway", "backend-local")


async def _stack(make_stack: StackFactory, text_model: ScriptedEngine) -> Stack:
    # A text model beside them: selection must tell all three apart.
    return await make_stack([text_model], config=parse_config(CONFIG), roles=ROLES)


def _speak(text: str, **params: Any) -> gateway_pb2.GenerateRequest:
    """No model: text to speech by its task type, or by a speech parameter alone."""
    request = gateway_pb2.GenerateRequest(no_cache=True)
    request.input.text = text
    request.params.MergeFrom(common_pb2.GenerationParams(**params))
    if not params:
        request.task.type = selector_pb2.TASK_TYPE_TEXT_TO_SPEECH
    return request


def _hear(wav: bytes) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(no_cache=True)  # no model: speech to text by its input
    request.input.audio.data = wav
    request.input.audio.mime_type = "audio/wav"
    return request


def _frames(wav: bytes) -> int:
    with wave.open(io.BytesIO(wav)) as read:
        assert (read.getnchannels(), read.getsampwidth(), read.getframerate()) == (1, 2, RATE)
        return int(read.getnframes())


def _check_segments(segments: list[common_pb2.TranscriptSegment], seconds: float) -> None:
    assert segments, "no segment"
    starts = [s.start_s for s in segments]
    assert starts == sorted(starts) and 0.0 <= starts[0] < 1.0
    assert all(s.start_s < s.end_s <= seconds + 0.5 for s in segments)
    assert segments[-1].end_s > seconds - 1.5  # the speech runs to the end


async def test_piper_speaks_and_whisper_hears_it_back_each_chosen_by_selection(
    make_stack: StackFactory,
) -> None:
    text_model = ScriptedEngine()
    stack = await _stack(make_stack, text_model)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        spoken = await gateway.Generate(_speak(SENTENCE), timeout=60)
        pcm_chunks = [
            c async for c in gateway.GenerateStream(_speak(TWO_SENTENCES, audio_format="pcm"))
        ]
        heard = await gateway.Generate(_hear(spoken.output.audio.data), timeout=120)
        pcm = b"".join(c.output.audio.data for c in pcm_chunks)
        heard_chunks = [
            c async for c in gateway.GenerateStream(_hear(make_wav_of(pcm)), timeout=120)
        ]
        heard_again = await gateway.Generate(_hear(make_wav_of(pcm)), timeout=120)
        text_request = gateway_pb2.GenerateRequest()
        text_request.input.text = "Say something."
        text_reply = await gateway.Generate(text_request, timeout=30)

    # Generate: the WAV whole, priced by what was spoken.
    assert spoken.model_id == PIPER and spoken.finish_reason == common_pb2.FINISH_REASON_STOP
    audio = spoken.output.audio
    assert (audio.mime_type, audio.sample_rate_hz) == ("audio/wav", RATE)
    seconds = _frames(audio.data) / RATE
    assert spoken.usage.audio_seconds == pytest.approx(seconds)
    assert spoken.usage.characters == len(SENTENCE) and spoken.text == ""

    # GenerateStream, pcm: a piece per sentence, then the finish with the seconds made.
    assert pcm_chunks[0].model_id == PIPER
    audio_chunks = [c for c in pcm_chunks if c.output.audio.data]
    assert len(audio_chunks) == 2
    assert {(c.output.audio.mime_type, c.output.audio.sample_rate_hz) for c in audio_chunks} == {
        ("audio/pcm", RATE)
    }
    last = pcm_chunks[-1]
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP
    assert len(pcm) == round(last.usage.audio_seconds * RATE * 2)
    assert last.usage.characters == len(TWO_SENTENCES)

    # Whisper, unary: the words, and the segments whole, in order, within the audio.
    assert heard.model_id == WHISPER
    assert missed(WORDS, heard.text) == [], heard.text
    segments = list(heard.output.segments)
    _check_segments(segments, seconds)
    assert "".join(s.text for s in segments) == heard.text
    assert heard.usage.audio_seconds == pytest.approx(seconds)

    # Whisper, streamed: each chunk's segment, the same as the unary answer's.
    pcm_seconds = len(pcm) / 2 / RATE
    assert heard_chunks[0].model_id == WHISPER
    streamed = [s for c in heard_chunks for s in c.output.segments]
    _check_segments(streamed, pcm_seconds)
    assert streamed == list(heard_again.output.segments)  # greedy: the same transcript
    transcript = "".join(c.text for c in heard_chunks)
    assert "".join(s.text for s in streamed) == transcript
    assert missed(("left", "bridge", "walk", "harbor"), transcript) == [], transcript
    assert heard_chunks[-1].usage.audio_seconds == pytest.approx(pcm_seconds)

    # Text with no speech parameter is answered, not spoken.
    assert text_reply.model_id == "scripted/echo"
    assert [i.WhichOneof("kind") for _, i, _ in text_model.calls] == ["text"]


def make_wav_of(pcm: bytes) -> bytes:
    import numpy as np

    return make_wav(np.frombuffer(pcm, dtype="<i2"), RATE)


async def _refusal(
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, request: gateway_pb2.GenerateRequest
) -> InvalidRequest:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gateway.Generate(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = error_from_rpc(refused.value)
    assert isinstance(err, InvalidRequest)
    return err


async def test_bad_speech_calls_are_refused_naming_the_field(make_stack: StackFactory) -> None:
    stack = await _stack(make_stack, ScriptedEngine())
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)

        def to(model: str, request: gateway_pb2.GenerateRequest) -> gateway_pb2.GenerateRequest:
            request.model = model
            return request

        voice = await _refusal(gateway, to(PIPER, _speak("Hi.", voice="amy")))
        audio_format = await _refusal(gateway, to(PIPER, _speak("Hi.", audio_format="ogg")))
        empty = await _refusal(gateway, to(PIPER, _speak("   ")))
        audio_in = await _refusal(gateway, to(PIPER, _hear(make_wav_of(b"\x00\x01" * 800))))
        top_k = await _refusal(gateway, to(PIPER, _speak("Hi.", top_k=3)))
        not_audio = await _refusal(gateway, to(WHISPER, _hear(b"plain text, not a WAV file")))
        hear_with_voice = _hear(make_wav_of(b"\0\0" * 8000))
        hear_with_voice.params.voice = "joe"
        voice_to_whisper = await _refusal(gateway, to(WHISPER, hear_with_voice))
        dropped = await gateway.Generate(
            to(PIPER, _speak("Hi.", top_k=3, drop_unsupported_params=True)), timeout=60
        )
    assert voice.field == "params.voice"
    assert voice.message == (
        f"params.voice 'amy' is not a voice of model '{PIPER}': its voices are joe"
    )
    assert audio_format.field == "params.audio_format"
    assert empty.field == "input.text"
    assert audio_in.field == "input"
    assert f"model '{PIPER}' does not take MODALITY_AUDIO input" in audio_in.message
    assert top_k.message == (
        f"params.top_k is not supported by model '{PIPER}' (piper, text to speech)"
    )
    assert not_audio.field == "input.audio.data"
    assert voice_to_whisper.field == "params.voice"
    assert list(dropped.dropped_params) == ["top_k"]
    assert dropped.output.audio.mime_type == "audio/wav" and dropped.usage.audio_seconds > 0
