"""The piper engine with the real voice: a WAV whole, PCM sentence by sentence, the lifecycle.

One engine (one load of the en_US joe voice, about half a second) serves the
module; its tests share one event loop for that. A sentence takes Piper about
a third of a second on two cores.
"""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from backends.speech.speech_audio import SENTENCE

from modelyard.backends.engine import Piece
from modelyard.backends.speech import piper_voices
from modelyard.backends.speech.piper_engine import PiperEngine
from modelyard_client.errors import FailedPrecondition, InvalidRequest, ModelNotFound, Overloaded
from modelyard_client.v1 import common_pb2

MODEL = "piper/en_US-joe-medium"
RATE = 22050
THREE_SENTENCES = "Good morning. The train leaves at nine. Please do not be late."
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[PiperEngine]:
    """The packaged voice, loaded once for the module; no call waits for another."""
    started = PiperEngine(max_queue=0)
    await started.start()
    await started.load(MODEL)
    yield started
    await started.close()


async def _speak(engine: PiperEngine, text: str, **params: Any) -> list[Piece]:
    request = common_pb2.GenerationParams(max_tokens=256, **params)
    return [p async for p in engine.infer_stream(MODEL, common_pb2.Input(text=text), request)]


async def test_wav_is_one_file_whole_on_the_last_piece(engine: PiperEngine) -> None:
    [last] = await _speak(engine, SENTENCE)
    assert (last.text, last.finish_reason) == ("", common_pb2.FINISH_REASON_STOP)
    assert last.output is not None
    audio = last.output.audio
    assert (audio.mime_type, audio.sample_rate_hz) == ("audio/wav", RATE)
    with wave.open(io.BytesIO(audio.data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        frames = wav.getnframes()
    assert last.audio_seconds == pytest.approx(frames / RATE)
    assert 3.0 < last.audio_seconds < 8.0  # fourteen words, spoken
    assert last.characters == len(SENTENCE)
    assert (last.input_tokens, last.output_tokens, last.dropped_params) == (0, 0, ())


async def test_pcm_streams_each_sentence_and_adds_up_to_the_audio_seconds(
    engine: PiperEngine,
) -> None:
    pieces = await _speak(engine, THREE_SENTENCES, audio_format="pcm")
    *audio_pieces, last = pieces
    assert len(audio_pieces) == 3  # one per sentence, as Piper makes them
    for piece in audio_pieces:
        assert piece.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED
        assert piece.output is not None
        audio = piece.output.audio
        assert (audio.mime_type, audio.sample_rate_hz) == ("audio/pcm", RATE)
        assert audio.data and len(audio.data) % 2 == 0
    joined = b"".join(p.output.audio.data for p in audio_pieces if p.output is not None)
    assert last.finish_reason == common_pb2.FINISH_REASON_STOP and last.output is None
    assert len(joined) == round(last.audio_seconds * RATE * 2)
    assert last.characters == len(THREE_SENTENCES)


async def test_dropped_parameters_are_named_on_the_last_piece(engine: PiperEngine) -> None:
    pieces = await _speak(engine, "Hi.", top_k=4, seed=7, drop_unsupported_params=True)
    assert pieces[-1].dropped_params == ("top_k", "seed")
    assert pieces[-1].audio_seconds > 0


async def test_text_that_makes_no_sound_is_refused_from_the_worker(engine: PiperEngine) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await _speak(engine, "...")
    assert refused.value.field == "input.text"
    assert engine.loaded_models() == [MODEL]  # the voice is fine and stays


async def test_a_call_cancelled_mid_wav_stops_at_the_next_sentence(engine: PiperEngine) -> None:
    """A WAV comes whole at the end: the worker itself must notice the caller went away."""
    text = common_pb2.Input(text=" ".join(f"This is sentence {n} of twenty." for n in range(20)))
    params = common_pb2.GenerationParams()
    began = time.monotonic()
    [whole] = [p async for p in engine.infer_stream(MODEL, text, params)]
    full_s = time.monotonic() - began  # about 1.5 s here, 20 sentences

    async def listen() -> list[Piece]:
        return [p async for p in engine.infer_stream(MODEL, text, params)]

    call = asyncio.create_task(listen())
    await asyncio.sleep(full_s / 10)
    began = time.monotonic()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - began < full_s / 2  # one sentence more, not the rest
    assert engine._models.leases(MODEL) == 0
    assert whole.audio_seconds > 20


async def test_a_second_call_beyond_max_queue_is_refused_while_one_runs(
    engine: PiperEngine,
) -> None:
    params = common_pb2.GenerationParams(audio_format="pcm")
    text = common_pb2.Input(text=THREE_SENTENCES)
    async with aclosing(engine.infer_stream(MODEL, text, params)) as first:
        await anext(first)  # holds the voice's one slot until closed
        with pytest.raises(Overloaded) as refused:
            await anext(engine.infer_stream(MODEL, text, params))
    assert refused.value.scope == f"model:{MODEL}"
    assert refused.value.message.startswith(f"model '{MODEL}' is at capacity: 1 call(s) running")
    assert "backends.piper.max_queue=0" in refused.value.message
    assert (await _speak(engine, "Again."))[-1].audio_seconds > 0  # the slot came back


async def test_the_catalog_entry_routes_text_to_speech_here(engine: PiperEngine) -> None:
    [entry] = engine.models()
    voice = piper_voices.packaged_voice()
    assert (entry.id, entry.name, entry.provider) == (MODEL, "en_US-joe-medium", "piper")
    assert list(entry.capabilities) == [
        common_pb2.CAPABILITY_TEXT_TO_SPEECH,
        common_pb2.CAPABILITY_STREAMING,
    ]
    assert list(entry.input_modalities) == [common_pb2.MODALITY_TEXT]
    assert list(entry.output_modalities) == [common_pb2.MODALITY_AUDIO]
    assert entry.resources.memory_bytes == voice.model_path.stat().st_size
    assert entry.resources.disk_bytes == voice.disk_bytes
    assert dict(entry.metadata) == {
        "path": str(voice.model_path),
        "format": "onnx",
        "family": "piper",
        "language": "en_US",
        "sample_rate_hz": "22050",
        "voices": "joe",
    }
    assert entry.performance.cold_start_ms > 0  # the module's load
    assert engine.serves(MODEL) and not engine.serves("piper/en_GB-alan-low")


async def test_load_and_unload_are_honoured(engine: PiperEngine) -> None:
    assert engine.loaded_models() == [MODEL]
    assert await engine.unload(MODEL) is True
    assert engine.loaded_models() == []
    assert await engine.unload(MODEL) is False
    pieces = await _speak(engine, "Back again.")  # a call loads it again
    assert pieces[-1].audio_seconds > 0 and engine.loaded_models() == [MODEL]
    with pytest.raises(ModelNotFound, match="'piper/nope' is not in the piper backend"):
        await engine.load("piper/nope")
    with pytest.raises(ModelNotFound):
        await anext(engine.infer_stream("piper/nope", common_pb2.Input(text="x"), _speech_params()))


def _speech_params() -> common_pb2.GenerationParams:
    return common_pb2.GenerationParams()


@pytest.mark.parametrize(
    ("model_input", "params", "field"),
    [
        (common_pb2.Input(text="Hi."), common_pb2.GenerationParams(voice="amy"), "params.voice"),
        (
            common_pb2.Input(text="Hi."),
            common_pb2.GenerationParams(audio_format="mp3"),
            "params.audio_format",
        ),
        (common_pb2.Input(text=""), common_pb2.GenerationParams(), "input.text"),
        (
            common_pb2.Input(audio=common_pb2.Audio(data=b"RIFF", mime_type="audio/wav")),
            common_pb2.GenerationParams(),
            "input",
        ),
        (common_pb2.Input(text="Hi."), common_pb2.GenerationParams(top_k=3), "params.top_k"),
    ],
    ids=["voice", "audio-format", "empty-text", "audio-input", "top-k"],
)
async def test_bad_calls_are_refused_without_loading_the_voice(
    model_input: common_pb2.Input, params: common_pb2.GenerationParams, field: str
) -> None:
    fresh = PiperEngine()
    await fresh.start()
    try:
        with pytest.raises(InvalidRequest) as refused:
            await anext(fresh.infer_stream(MODEL, model_input, params))
        assert refused.value.field == field
        assert fresh.loaded_models() == []
        assert fresh.models()[0].performance.cold_start_ms == 0  # never opened
    finally:
        await fresh.close()


async def test_models_dir_serves_each_voice_in_it(tmp_path: Path) -> None:
    voice = piper_voices.packaged_voice()
    (tmp_path / "joe.onnx").symlink_to(voice.model_path)
    (tmp_path / "joe.onnx.json").symlink_to(voice.config_path)
    (tmp_path / "lonely.onnx").write_bytes(b"")  # no configuration: not a voice
    (tmp_path / "broken.onnx").write_bytes(b"")
    (tmp_path / "broken.onnx.json").write_text('{"audio": {}}')  # not Piper's: left out
    (tmp_path / "garbled.onnx").write_bytes(b"not an onnx model")
    (tmp_path / "garbled.onnx.json").symlink_to(voice.config_path)
    engine = PiperEngine(tmp_path, backend="voices")
    await engine.start()
    assert [m.id for m in engine.models()] == ["voices/garbled", "voices/joe"]
    assert engine.health().status == common_pb2.HEALTH_STATUS_HEALTHY
    with pytest.raises(FailedPrecondition) as unloadable:
        await engine.load("voices/garbled")
    assert unloadable.value.message.startswith(
        f"piper: the voice {tmp_path / 'garbled.onnx'} cannot be loaded: "
    )
    assert engine.loaded_models() == []
    await engine.close()
    narrowed = PiperEngine(tmp_path, backend="voices", models=("other",))
    await narrowed.start()
    assert narrowed.models() == []
    assert narrowed.health().status == common_pb2.HEALTH_STATUS_DEGRADED
    assert narrowed.health().reason == f"no Piper voices in {tmp_path}"


async def test_without_the_voice_package_the_engine_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(piper_voices, "PACKAGED_VOICE_DISTRIBUTION", "no-such-voice-package")
    engine = PiperEngine()
    await engine.start()
    health = engine.health()
    assert health.status == common_pb2.HEALTH_STATUS_UNHEALTHY
    assert health.reason.startswith("the Python package no-such-voice-package is not installed")
    assert engine.models() == []
