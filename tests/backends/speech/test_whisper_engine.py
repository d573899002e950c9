"""The whisper engine with the real model: Piper speaks a sentence, Whisper finds its words.

One engine (and one load of Whisper tiny.en) serves the module; its tests share
one event loop for that. Greedy decoding (beam 1) keeps each transcription
around a second on two cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from backends.speech.speech_audio import WORDS, make_wav, missed, pcm16, words_of

from modelyard.backends.engine import Piece
from modelyard.backends.speech.transcription import (
    TranscribeOptions,
    transcribe_segments,
)
from modelyard.backends.speech.wav_input import read_wav, samples_for_model
from modelyard.backends.speech.whisper_engine import WhisperEngine
from modelyard.backends.speech.whisper_models import packaged_model
from modelyard_client.errors import InvalidRequest, ModelNotFound, Overloaded
from modelyard_client.v1 import common_pb2

MODEL = "whisper/whisper-tiny.en"
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[WhisperEngine]:
    """The packaged model, loaded once for the module."""
    started = WhisperEngine(beam_size=1, max_queue=0)
    await started.start()
    await started.load(MODEL)
    yield started
    await started.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def heard(engine: WhisperEngine, spoken_wav: bytes) -> list[Piece]:
    """The pieces of the spoken sentence's transcription (greedy: the same on every run)."""
    return await _transcribe(engine, spoken_wav)


def _input(wav: bytes) -> common_pb2.Input:
    return common_pb2.Input(audio=common_pb2.Audio(data=wav, mime_type="audio/wav"))


async def _transcribe(
    engine: WhisperEngine, wav: bytes, max_tokens: int = 0, model: str = MODEL
) -> list[Piece]:
    params = common_pb2.GenerationParams(max_tokens=max_tokens)
    return [p async for p in engine.infer_stream(model, _input(wav), params)]


async def test_the_spoken_sentence_comes_back_as_its_words(heard: list[Piece]) -> None:
    pieces = heard
    transcript = "".join(p.text for p in pieces)
    assert missed(WORDS, transcript) == [], transcript
    assert transcript == transcript.lstrip()
    last = pieces[-1]
    assert (last.text, last.finish_reason) == ("", common_pb2.FINISH_REASON_STOP)
    assert all(p.finish_reason == common_pb2.FINISH_REASON_UNSPECIFIED for p in pieces[:-1])
    assert last.input_tokens == 0  # audio has no input tokens: its seconds are counted
    assert last.output_tokens > len(words_of(transcript))  # a token a word or more, timestamps too


async def test_each_segment_is_one_piece_carrying_its_timestamps(
    engine: WhisperEngine, spoken_wav: bytes, heard: list[Piece]
) -> None:
    wav = read_wav(_input(spoken_wav).audio, MODEL)
    async with engine._models.lease(MODEL) as model:
        samples = samples_for_model(wav, 16000)
        segments = await asyncio.to_thread(
            lambda: list(transcribe_segments(model, samples, TranscribeOptions(beam_size=1)))
        )
    assert segments, "no speech found"
    starts = [s.start_s for s in segments]
    assert starts == sorted(starts) and starts[0] < 1.0
    assert all(s.start_s < s.end_s <= wav.seconds + 0.5 for s in segments)
    assert segments[-1].end_s > wav.seconds - 1.5  # the speech runs to the end
    pieces = heard
    assert [p.text for p in pieces[:-1]] == [
        segments[0].text.lstrip(),
        *(s.text for s in segments[1:]),
    ]
    assert pieces[-1].output_tokens == sum(len(s.tokens) for s in segments)
    # Each piece carries its segment, timed, on the wire; the finish the audio's duration.
    sent = [p.output.segments for p in pieces[:-1] if p.output is not None]
    assert [len(s) for s in sent] == [1] * len(segments)
    for timed, segment, piece in zip(sent, segments, pieces, strict=False):
        assert (timed[0].start_s, timed[0].end_s) == pytest.approx((segment.start_s, segment.end_s))
        assert timed[0].text == piece.text
    assert pieces[-1].output is None
    assert pieces[-1].audio_seconds == pytest.approx(wav.seconds)
    assert wav.seconds == pytest.approx(len(pcm16(spoken_wav)[0]) / 22050)


async def test_stereo_at_44_1_khz_is_heard_as_well(
    engine: WhisperEngine, spoken_wav: bytes
) -> None:
    mono, rate = pcm16(spoken_wav)
    times = np.arange(int(len(mono) * 44100 / rate)) * rate / 44100
    resampled = np.interp(times, np.arange(len(mono)), mono).astype(np.int16)
    quieter = (resampled // 2).astype(np.int16)
    stereo = np.column_stack([resampled, quieter]).reshape(-1)
    pieces = await _transcribe(engine, make_wav(stereo, 44100, channels=2))
    assert missed(WORDS, "".join(p.text for p in pieces)) == []


async def test_max_tokens_cuts_the_transcript_and_finishes_length(
    engine: WhisperEngine, spoken_wav: bytes, heard: list[Piece]
) -> None:
    full = "".join(p.text for p in heard)
    pieces = await _transcribe(engine, spoken_wav, max_tokens=6)
    last = pieces[-1]
    assert (last.finish_reason, last.output_tokens) == (common_pb2.FINISH_REASON_LENGTH, 6)
    cut = "".join(p.text for p in pieces)
    assert cut and full.startswith(cut) and len(cut) < len(full)


async def test_a_second_call_beyond_max_queue_is_refused_while_one_runs(
    engine: WhisperEngine, spoken_wav: bytes
) -> None:
    params = common_pb2.GenerationParams()
    async with aclosing(engine.infer_stream(MODEL, _input(spoken_wav), params)) as first:
        await anext(first)  # holds the model's one slot until closed
        with pytest.raises(Overloaded) as refused:
            await anext(engine.infer_stream(MODEL, _input(spoken_wav), params))
    assert refused.value.scope == f"model:{MODEL}"
    assert refused.value.message.startswith(f"model '{MODEL}' is at capacity: 1 call(s) running")
    assert "backends.whisper.max_queue=0" in refused.value.message
    # The slot came back when the first stream closed.
    assert (await _transcribe(engine, spoken_wav, max_tokens=2))[-1].output_tokens == 2


async def test_audio_found_empty_when_decoded_is_refused_from_the_worker(
    engine: WhisperEngine, spoken_wav: bytes
) -> None:
    header_only = spoken_wav[:44]  # a header promising samples, and none
    with pytest.raises(InvalidRequest, match=r"^input.audio.data decodes to no samples$"):
        await _transcribe(engine, header_only)
    assert engine.loaded_models() == [MODEL]  # the model is fine and stays


async def test_the_catalog_entry_routes_speech_to_text_here(engine: WhisperEngine) -> None:
    [entry] = engine.models()
    _, folder = packaged_model()
    assert (entry.id, entry.name, entry.provider) == (MODEL, "whisper-tiny.en", "whisper")
    assert list(entry.capabilities) == [
        common_pb2.CAPABILITY_SPEECH_TO_TEXT,
        common_pb2.CAPABILITY_STREAMING,
    ]
    assert list(entry.input_modalities) == [common_pb2.MODALITY_AUDIO]
    assert list(entry.output_modalities) == [common_pb2.MODALITY_TEXT]
    assert entry.metadata["path"] == str(folder)
    assert entry.resources.memory_bytes == (folder / "model.bin").stat().st_size
    assert entry.performance.cold_start_ms > 0  # the module's load
    assert engine.serves(MODEL) and not engine.serves("whisper/whisper-base")


async def test_load_and_unload_are_honoured(engine: WhisperEngine, spoken_wav: bytes) -> None:
    assert engine.loaded_models() == [MODEL]
    assert await engine.unload(MODEL) is True
    assert engine.loaded_models() == []
    assert await engine.unload(MODEL) is False
    took_ms = await engine.load(MODEL)
    assert took_ms > 0 and engine.loaded_models() == [MODEL]
    with pytest.raises(ModelNotFound, match="'whisper/nope' is not in the whisper backend"):
        await engine.load("whisper/nope")
    with pytest.raises(ModelNotFound):
        await _transcribe(engine, spoken_wav, model="whisper/nope")


async def test_a_call_after_unload_loads_the_model_again(
    engine: WhisperEngine, spoken_wav: bytes
) -> None:
    await engine.unload(MODEL)
    pieces = await _transcribe(engine, spoken_wav, max_tokens=3)
    assert pieces[-1].output_tokens == 3
    assert engine.loaded_models() == [MODEL]


async def test_models_dir_serves_each_model_folder_in_it(tmp_path: Path) -> None:
    _, folder = packaged_model()
    (tmp_path / "tiny-en").symlink_to(folder)
    (tmp_path / "notes").mkdir()  # not a model: no model.bin
    (tmp_path / "notes" / "config.json").write_text("{}")
    engine = WhisperEngine(tmp_path, backend="speech")
    await engine.start()
    assert [m.id for m in engine.models()] == ["speech/tiny-en"]
    narrowed = WhisperEngine(tmp_path, backend="speech", models=("other",))
    await narrowed.start()
    assert narrowed.models() == []
    assert narrowed.health().status == common_pb2.HEALTH_STATUS_DEGRADED
    assert narrowed.health().reason == f"no Whisper models in {tmp_path}"
