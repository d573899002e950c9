"""Audio that is not what Whisper takes is refused, naming the problem, before any inference."""

from __future__ import annotations

import numpy as np
import pytest
from backends.speech.speech_audio import make_wav

from modelyard.backends.speech.wav_input import read_wav, samples_for_model
from modelyard.backends.speech.whisper_engine import WhisperEngine
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import common_pb2

MODEL = "whisper/whisper-tiny.en"
TONE = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)  # half a second at 16 kHz


def _audio(data: bytes, mime_type: str = "audio/wav", rate: int = 0) -> common_pb2.Audio:
    return common_pb2.Audio(data=data, mime_type=mime_type, sample_rate_hz=rate)


def _eight_bit_wav() -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(bytes(800))
    return buffer.getvalue()


def _mp3_in_wav() -> bytes:
    """A RIFF/WAVE file whose format tag says MPEG layer 3 (0x55), not PCM."""
    wav = make_wav(TONE, 16000)
    return wav[:20] + (0x55).to_bytes(2, "little") + wav[22:]


BAD_AUDIO = [
    pytest.param(
        _audio(b"ID3\x03\x00 an mp3 frame", "audio/mpeg"),
        "input.audio.mime_type 'audio/mpeg': model 'whisper/whisper-tiny.en' takes WAV audio "
        "(audio/wav)",
        id="mp3-mime-type",
    ),
    pytest.param(
        _audio(b""),
        "input.audio.data is empty: model 'whisper/whisper-tiny.en' has nothing to transcribe",
        id="empty",
    ),
    pytest.param(
        _audio(b"this is plain text, not sound"),
        "input.audio.data is not a WAV file model 'whisper/whisper-tiny.en' can read: "
        "file does not start with RIFF id",
        id="not-a-wav",
    ),
    pytest.param(
        _audio(make_wav(TONE, 16000)[:30]),
        "input.audio.data is not a WAV file model 'whisper/whisper-tiny.en' can read: "
        "truncated header",
        id="cut-header",
    ),
    pytest.param(
        _audio(_mp3_in_wav()),
        "input.audio.data is not a WAV file model 'whisper/whisper-tiny.en' can read: "
        "unknown format: 85",
        id="not-pcm",
    ),
    pytest.param(
        _audio(make_wav(np.zeros(0, np.int16), 16000)),
        "input.audio.data holds no samples: model 'whisper/whisper-tiny.en' has nothing to "
        "transcribe",
        id="no-samples",
    ),
    pytest.param(
        _audio(_eight_bit_wav()),
        "input.audio.data has 8-bit samples: model 'whisper/whisper-tiny.en' takes 16-bit PCM WAV",
        id="8-bit",
    ),
    pytest.param(
        _audio(make_wav(np.zeros(300, np.int16), 16000, channels=3)),
        "input.audio.data has 3 channels: model 'whisper/whisper-tiny.en' takes mono or stereo WAV",
        id="3-channels",
    ),
    pytest.param(
        _audio(make_wav(TONE, 16000), rate=44100),
        "input.audio.sample_rate_hz 44100 disagrees with the WAV header's 16000 Hz",
        id="rate-mismatch",
    ),
]


@pytest.mark.parametrize(("audio", "message"), BAD_AUDIO)
def test_bad_audio_is_refused_naming_the_problem(audio: common_pb2.Audio, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        read_wav(audio, MODEL)
    assert refused.value.message == message
    assert refused.value.field is not None and refused.value.field.startswith("input.audio")


@pytest.mark.parametrize(("audio", "message"), BAD_AUDIO)
async def test_the_engine_refuses_bad_audio_without_loading_the_model(
    audio: common_pb2.Audio, message: str
) -> None:
    engine = WhisperEngine()
    await engine.start()
    try:
        stream = engine.infer_stream(MODEL, common_pb2.Input(audio=audio), _params())
        with pytest.raises(InvalidRequest) as refused:
            await anext(stream)
        assert refused.value.message == message
        assert engine.loaded_models() == []
        assert engine.models()[0].performance.cold_start_ms == 0  # never opened
    finally:
        await engine.close()


@pytest.mark.parametrize(
    ("model_input", "kind"),
    [
        (common_pb2.Input(text="transcribe this"), "text"),
        (common_pb2.Input(chat=common_pb2.ChatMessages()), "chat"),
        (common_pb2.Input(image=common_pb2.Image(data=b"\x89PNG")), "image"),
        (common_pb2.Input(), "an empty input"),
    ],
)
async def test_input_that_is_not_audio_is_refused_naming_the_modality(
    model_input: common_pb2.Input, kind: str
) -> None:
    engine = WhisperEngine()
    await engine.start()
    try:
        with pytest.raises(InvalidRequest) as refused:
            await anext(engine.infer_stream(MODEL, model_input, _params()))
        assert refused.value.message == (
            f"model '{MODEL}' takes audio input (MODALITY_AUDIO: speech to text), not {kind}"
        )
        assert engine.loaded_models() == []
    finally:
        await engine.close()


def test_stereo_at_any_rate_is_mono_at_the_models_rate() -> None:
    stereo = np.column_stack([TONE, TONE]).reshape(-1)
    wav = read_wav(_audio(make_wav(stereo, 8000, channels=2), rate=8000), MODEL)
    assert (wav.channels, wav.sample_rate_hz, wav.frames) == (2, 8000, 8000)
    assert wav.seconds == 1.0
    samples = samples_for_model(wav, 16000)
    assert samples.dtype == np.float32
    assert len(samples) == pytest.approx(16000, abs=64)  # one second at 16 kHz
    assert float(np.abs(samples).max()) == pytest.approx(8000 / 32768, rel=0.05)


def test_a_header_whose_samples_are_missing_decodes_to_nothing_and_is_refused() -> None:
    header_only = make_wav(TONE, 16000)[:44]  # says 8,000 frames, holds none
    wav = read_wav(_audio(header_only), MODEL)
    assert wav.frames == 8000
    with pytest.raises(InvalidRequest, match=r"^input.audio.data decodes to no samples$"):
        samples_for_model(wav, 16000)


def _params() -> common_pb2.GenerationParams:
    return common_pb2.GenerationParams(max_tokens=64)
