"""The audio a speech-to-text call takes: a WAV of 16-bit PCM, checked before any inference.

`read_wav` parses the header with the standard library's `wave` (cheap: on the
event loop, before the call waits for a model), so audio that is not a WAV,
an empty one, or one whose format the engine does not take is `InvalidRequest`
naming the problem. `samples_for_model` then decodes it to the mono float32
samples at 16 kHz Whisper hears, through faster-whisper's own decoder (PyAV's
resampler, offline), in the worker thread.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

# What callers write for a WAV (the IANA name, and the ones browsers and tools send);
# empty: the caller did not say, the header decides.
WAV_MIME_TYPES = frozenset({"", "audio/wav", "audio/wave", "audio/x-wav", "audio/vnd.wave"})
SAMPLE_WIDTH_BYTES = 2  # 16-bit PCM
CHANNELS = (1, 2)


@dataclass(frozen=True)
class WavAudio:
    """A WAV whose header was read: what it holds and for how long."""

    data: bytes
    channels: int
    sample_rate_hz: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate_hz


def read_wav(audio: common_pb2.Audio, model_id: str) -> WavAudio:
    """The header of `audio` checked: a WAV of 16-bit PCM, mono or stereo, holding samples,
    at the rate `sample_rate_hz` says when it says one; `InvalidRequest` otherwise."""
    where = f"model '{model_id}'"
    mime = audio.mime_type.split(";")[0].strip().lower()
    if mime not in WAV_MIME_TYPES:
        raise InvalidRequest(
            f"input.audio.mime_type {audio.mime_type!r}: {where} takes WAV audio (audio/wav)",
            field="input.audio.mime_type",
        )
    if not audio.data:
        raise InvalidRequest(
            f"input.audio.data is empty: {where} has nothing to transcribe",
            field="input.audio.data",
        )
    try:
        with wave.open(io.BytesIO(audio.data), "rb") as wav:
            channels, width = wav.getnchannels(), wav.getsampwidth()
            rate, frames = wav.getframerate(), wav.getnframes()
    except (wave.Error, EOFError) as exc:
        why = str(exc) or "truncated header"  # EOFError says nothing
        raise InvalidRequest(
            f"input.audio.data is not a WAV file {where} can read: {why}",
            field="input.audio.data",
        ) from None
    if width != SAMPLE_WIDTH_BYTES:
        raise InvalidRequest(
            f"input.audio.data has {width * 8}-bit samples: {where} takes 16-bit PCM WAV",
            field="input.audio.data",
        )
    if channels not in CHANNELS:
        raise InvalidRequest(
            f"input.audio.data has {channels} channels: {where} takes mono or stereo WAV",
            field="input.audio.data",
        )
    if rate <= 0:
        raise InvalidRequest(
            f"input.audio.data declares a sample rate of {rate} Hz", field="input.audio.data"
        )
    if frames == 0:
        raise InvalidRequest(
            f"input.audio.data holds no samples: {where} has nothing to transcribe",
            field="input.audio.data",
        )
    if audio.sample_rate_hz and audio.sample_rate_hz != rate:
        raise InvalidRequest(
            f"input.audio.sample_rate_hz {audio.sample_rate_hz} disagrees with the WAV "
            f"header's {rate} Hz",
            field="input.audio.sample_rate_hz",
        )
    return WavAudio(audio.data, channels, rate, frames)


def samples_for_model(wav: WavAudio, sample_rate_hz: int) -> npt.NDArray[np.float32]:
    """The WAV as mono float32 samples at `sample_rate_hz` (stereo is averaged)."""
    from faster_whisper.audio import decode_audio

    try:
        samples = decode_audio(io.BytesIO(wav.data), sampling_rate=sample_rate_hz)
    except Exception as exc:  # PyAV's errors (InvalidDataError...) share no base we can name
        raise InvalidRequest(
            f"input.audio.data could not be decoded as WAV: {exc}", field="input.audio.data"
        ) from exc
    if not len(samples):
        raise InvalidRequest("input.audio.data decodes to no samples", field="input.audio.data")
    return np.asarray(samples, dtype=np.float32)
