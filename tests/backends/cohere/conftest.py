"""Fixtures for the cohere engine: a fake Cohere API, and an engine pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from backends.cohere.calls import KEY
from support.fake_cohere import FakeCohere

from modelyard.backends.cohere.engine import CohereEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint


@pytest.fixture
async def cohere() -> AsyncIterator[FakeCohere]:
    fake = FakeCohere()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def engine(cohere: FakeCohere) -> AsyncIterator[CohereEngine]:
    """A started engine serving the fake's model with the key the fake accepts."""
    started = CohereEngine(
        ProviderEndpoint("cohere", cohere.url, api_key=KEY, models=("command-a-03-2025",))
    )
    await started.start()
    yield started
    await started.close()
