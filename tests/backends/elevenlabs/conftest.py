"""Fixtures for the elevenlabs engine: a fake ElevenLabs API, and an engine pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from backends.elevenlabs.calls import KEY, NAME
from support.fake_elevenlabs import FakeElevenLabs

from modelyard.backends.elevenlabs.engine import ElevenLabsEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint


@pytest.fixture
async def elevenlabs() -> AsyncIterator[FakeElevenLabs]:
    fake = FakeElevenLabs()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def engine(elevenlabs: FakeElevenLabs) -> AsyncIterator[ElevenLabsEngine]:
    """A started engine serving the catalog's multilingual v2 with the key the fake accepts."""
    started = ElevenLabsEngine(
        ProviderEndpoint("elevenlabs", f"{elevenlabs.url}/v1", api_key=KEY, models=(NAME,))
    )
    await started.start()
    yield started
    await started.close()
