"""Fixtures for the hot-swap tests: an OpenAI-compatible upstream serving two models."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from backends.openai_compat.openai_fake import FakeUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A running fake upstream serving ``model-a`` and ``model-b``, each answer naming its model."""
    fake = FakeUpstream(models=["model-a", "model-b"])
    fake.echo_model()
    await fake.start()
    yield fake
    await fake.stop()
