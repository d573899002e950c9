"""Fixtures of the Whisper tests: real speech, spoken once per session (about two seconds)."""

from __future__ import annotations

import pytest
from backends.speech.speech_audio import SENTENCE, speak


@pytest.fixture(scope="session")
def spoken_wav() -> bytes:
    """`SENTENCE` spoken by Piper (mono, 16-bit, 22,050 Hz)."""
    return speak(SENTENCE)
