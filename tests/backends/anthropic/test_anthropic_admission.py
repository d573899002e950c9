"""Calls beyond the backend's slots and queue are refused before anything is sent."""

from __future__ import annotations

import asyncio

import pytest
from backends.anthropic.anthropic_calls import collect, endpoint_of
from support.fake_anthropic import FakeAnthropic, message_events

from modelyard.backends.anthropic.engine import AnthropicEngine
from modelyard_client.errors import Overloaded


async def test_a_call_beyond_the_slot_and_queue_is_overloaded_and_unsent(
    fake: FakeAnthropic,
) -> None:
    served = AnthropicEngine(endpoint_of(fake, max_concurrency=1, max_queue=0))
    await served.start()
    release = asyncio.Event()
    fake.stream(message_events(["first"]), hold=release)
    try:
        first = asyncio.create_task(collect(served))
        # The first call holds the one slot, its answer held back.
        await asyncio.wait_for(fake.streaming.wait(), 5)
        with pytest.raises(Overloaded) as caught:
            await collect(served)
        assert caught.value.scope == "upstream:claude"
        assert "backends.claude.max_concurrency=1, max_queue=0" in caught.value.message
        release.set()
        assert "".join(p.text for p in await first) == "first"
    finally:
        release.set()
        await served.close()
    assert len(fake.received) == 1  # the refused call never reached the API
