"""Fixtures for the anthropic backend: the fake API, and an engine in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from backends.anthropic.anthropic_calls import endpoint_of
from support.fake_anthropic import FakeAnthropic

from modelyard.backends.anthropic.engine import AnthropicEngine


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def engine(fake: FakeAnthropic) -> AsyncIterator[AnthropicEngine]:
    """An engine serving the fake's two models (configured: no listing at start)."""
    served = AnthropicEngine(endpoint_of(fake))
    await served.start()
    yield served
    await served.close()
