"""Requests and a stream reader the elevenlabs engine's tests share."""

from __future__ import annotations

import io
import wave

from modelyard.backends.elevenlabs.engine import ElevenLabsEngine
from modelyard.backends.engine import Piece
from modelyard_client.v1 import common_pb2

NAME = "eleven_multilingual_v2"
MODEL = f"elevenlabs/{NAME}"  # its catalog id
KEY = "xi-test-key"  # the key the fake accepts
VOICE = "JBFqnCBsd6RMkjVDRZzb"  # the voice the fake has
TEXT = "The first move is what sets everything in motion."


def params(**fields: object) -> common_pb2.GenerationParams:
    """Parameters with the fake's voice unless `fields` say otherwise."""
    return common_pb2.GenerationParams(**{"voice": VOICE, **fields})  # type: ignore[arg-type]


async def collect(
    engine: ElevenLabsEngine,
    model_input: common_pb2.Input | None = None,
    generation: common_pb2.GenerationParams | None = None,
    pieces: list[Piece] | None = None,
) -> list[Piece]:
    """Every piece of one call; `pieces` gets them as they come, for a call that raises."""
    out = pieces if pieces is not None else []
    stream = engine.infer_stream(
        MODEL, model_input or common_pb2.Input(text=TEXT), generation or params()
    )
    async for piece in stream:
        out.append(piece)
    return out


def audio_of(pieces: list[Piece]) -> bytes:
    return b"".join(p.output.audio.data for p in pieces if p.output is not None)


def wav_frames(data: bytes) -> tuple[int, int, int, bytes]:
    """A WAV file's channels, sample width, rate and frames (raises if it is no WAV)."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        return (
            wav.getnchannels(),
            wav.getsampwidth(),
            wav.getframerate(),
            wav.readframes(wav.getnframes()),
        )
