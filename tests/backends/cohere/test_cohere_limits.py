"""The engine's own limits on Cohere calls: its admission, and its read timeout."""

from __future__ import annotations

import asyncio

import pytest
from backends.cohere.calls import KEY, collect
from support.fake_cohere import FakeCohere

from modelyard.backends.admission import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUE
from modelyard.backends.cohere.engine import CohereEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard_client.errors import BackendUnavailable, Overloaded


def _engine(
    url: str,
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    max_queue: int = DEFAULT_MAX_QUEUE,
    timeout_s: float = 120.0,
) -> CohereEngine:
    return CohereEngine(
        ProviderEndpoint(
            "cohere",
            url,
            api_key=KEY,
            models=("command-a-03-2025",),
            timeout_s=timeout_s,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
        )
    )


async def test_a_call_beyond_the_slots_and_the_queue_is_refused_unsent(cohere: FakeCohere) -> None:
    engine = _engine(cohere.url, max_concurrency=1, max_queue=0)
    await engine.start()
    cohere.delay(0.5)
    try:
        first = asyncio.create_task(collect(engine))
        await cohere.received.wait()  # the first call holds the only slot, at the fake
        with pytest.raises(Overloaded) as caught:
            await collect(engine)
        assert caught.value.scope == "upstream:cohere"
        assert len(cohere.bodies) == 1  # the refused call sent nothing
        assert "".join(p.text for p in await first) == "Hello, world"
    finally:
        await engine.close()


async def test_an_upstream_that_says_nothing_times_out_as_unavailable(cohere: FakeCohere) -> None:
    engine = _engine(cohere.url, timeout_s=0.2)
    await engine.start()
    cohere.delay(2.0)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await collect(engine)
    finally:
        await engine.close()
    assert caught.value.message.endswith("is unreachable: timed out")
