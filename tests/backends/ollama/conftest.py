"""Fixtures for the native Ollama engine: a fake daemon, and an engine started against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from support.fake_ollama import FakeOllama

from modelyard.backends.ollama.engine import OllamaEngine

EngineFor = Callable[..., Awaitable[OllamaEngine]]


@pytest.fixture
async def daemon() -> AsyncIterator[FakeOllama]:
    """A running fake daemon with its default models pulled and none loaded."""
    fake = FakeOllama(loaded=[])
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def engine_for(daemon: FakeOllama) -> AsyncIterator[EngineFor]:
    """Start an `OllamaEngine` against `daemon` (keyword arguments: the engine's)."""
    started: list[OllamaEngine] = []

    async def start(**kwargs: Any) -> OllamaEngine:
        engine = OllamaEngine("ollama", kwargs.pop("endpoint", daemon.url), **kwargs)
        await engine.start()
        started.append(engine)
        return engine

    yield start
    for engine in started:
        await engine.close()


@pytest.fixture
async def engine(engine_for: EngineFor) -> OllamaEngine:
    return await engine_for()
