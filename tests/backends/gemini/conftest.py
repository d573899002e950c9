"""Fixtures for the gemini engine: a fake Gemini server and engines of both kinds in front
of it (the Gemini API with a key, Vertex AI with a service-account key file)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from backends.gemini.gemini_engines import studio_engine, vertex_engine
from support.fake_gemini import FakeGemini, write_service_account

from modelyard.backends.gemini import GeminiEngine


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    server = FakeGemini()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def studio(fake: FakeGemini) -> AsyncIterator[GeminiEngine]:
    """A Gemini API engine with the fake's key, serving ``gemini/gemini-2.5-flash``."""
    engine = studio_engine(fake)
    await engine.start()
    yield engine
    await engine.close()


@pytest.fixture
async def vertex(fake: FakeGemini, tmp_path: Path) -> AsyncIterator[GeminiEngine]:
    """A Vertex AI engine with a service-account key the fake trusts."""
    engine = vertex_engine(fake, write_service_account(tmp_path, fake))
    await engine.start()
    yield engine
    await engine.close()
