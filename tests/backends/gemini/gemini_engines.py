"""Gemini engines of both kinds pointed at the fake, and a way to read one call's pieces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from support.fake_gemini import API_KEY, MODEL, PROJECT, REGION, FakeGemini

from modelyard.backends.engine import Piece
from modelyard.backends.gemini import (
    ApiKey,
    GeminiEndpoint,
    GeminiEngine,
    ServiceAccountToken,
    gemini_models_url,
    vertex_models_url,
)
from modelyard_client.v1 import common_pb2

STUDIO_ID = f"gemini/{MODEL}"
VERTEX_ID = f"vertex/{MODEL}"


def studio_engine(
    fake: FakeGemini,
    key: Callable[[], str] = lambda: API_KEY,
    *,
    max_concurrency: int = 256,
    max_queue: int = 512,
) -> GeminiEngine:
    root, models_url = gemini_models_url(fake.url)
    return GeminiEngine(
        GeminiEndpoint(
            "gemini",
            "gemini",
            root,
            models_url,
            ApiKey(key),
            models=(MODEL,),
            max_concurrency=max_concurrency,
            max_queue=max_queue,
        )
    )


def vertex_engine(fake: FakeGemini, credentials_file: Path | None) -> GeminiEngine:
    root, models_url = vertex_models_url(PROJECT, REGION, fake.url)
    return GeminiEngine(
        GeminiEndpoint(
            "vertex",
            "vertex",
            root,
            models_url,
            ServiceAccountToken("vertex", credentials_file),
            models=(MODEL,),
        )
    )


def text_input(text: str = "Hello there") -> common_pb2.Input:
    return common_pb2.Input(text=text)


async def collect(
    engine: GeminiEngine,
    model_input: common_pb2.Input | None = None,
    params: common_pb2.GenerationParams | None = None,
    model_id: str = STUDIO_ID,
) -> list[Piece]:
    """Every piece of one streamed call."""
    return [
        piece
        async for piece in engine.infer_stream(
            model_id, model_input or text_input(), params or common_pb2.GenerationParams()
        )
    ]
