"""`ArmOutcomes`: batching, dropping and failed sends, with a fake sender and a fake clock."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from modelyard.gateway.arm_outcomes import ArmOutcomes, call_cost_usd
from modelyard_client.v1 import common_pb2, hotswap_pb2

LOGGER = "modelyard.gateway.arm_outcomes"


def _outcome(i: int) -> hotswap_pb2.ArmOutcome:
    return hotswap_pb2.ArmOutcome(split_id="ab-1", arm="a", request_id=f"r{i}", latency_ms=1.0)


class Sender:
    """Keeps each batch's request ids; fails the batches whose numbers are in `failing`."""

    def __init__(self, failing: frozenset[int] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.failing = failing
        self.calls = 0

    async def __call__(self, batch: hotswap_pb2.OutcomeBatch) -> object:
        self.calls += 1
        if self.calls in self.failing:
            raise ConnectionError("the hot-swap service is away")
        self.batches.append([o.request_id for o in batch.outcomes])
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s}s"
        await asyncio.sleep(0.005)


async def test_a_full_batch_sends_what_waits_at_once_in_batches_of_at_most_500() -> None:
    sender = Sender()
    outcomes = ArmOutcomes(batch_size=500, interval_s=60)  # the interval never comes
    outcomes.start_sending(sender)
    for i in range(499):
        outcomes.record(_outcome(i))
    await asyncio.sleep(0.05)
    assert sender.batches == []  # below a batch: waits for the interval
    for i in range(499, 1203):
        outcomes.record(_outcome(i))
    await _until(lambda: outcomes.waiting == 0)
    assert [len(b) for b in sender.batches] == [500, 500, 203]
    assert [r for b in sender.batches for r in b] == [f"r{i}" for i in range(1203)]
    outcomes.record(_outcome(1203))
    await outcomes.close()  # sends the last one
    assert sender.batches[-1] == ["r1203"]


async def test_a_part_batch_goes_at_the_next_interval() -> None:
    sender = Sender()
    outcomes = ArmOutcomes(interval_s=0.05)
    outcomes.start_sending(sender)
    for i in range(3):
        outcomes.record(_outcome(i))
    assert sender.batches == []  # record only queues
    await _until(lambda: bool(sender.batches))
    assert sender.batches == [["r0", "r1", "r2"]]
    await outcomes.close()
    assert sender.calls == 1  # nothing was left to send


async def test_beyond_the_limit_the_oldest_are_dropped_counted_and_logged_once_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outcomes = ArmOutcomes(limit=5, clock=clock)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(8):
            outcomes.record(_outcome(i))
        assert outcomes.dropped == 3
        assert len(caplog.records) == 1
        clock.now += 9.9
        outcomes.record(_outcome(8))
        assert len(caplog.records) == 1
        clock.now += 0.1
        outcomes.record(_outcome(9))
    assert outcomes.dropped == 5
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "arm outcomes: 1 dropped",
        "arm outcomes: 4 dropped",  # the three since the last line, and this one
    ]
    sender = Sender()
    outcomes.start_sending(sender)
    await outcomes.close()
    assert sender.batches == [["r5", "r6", "r7", "r8", "r9"]]  # the newest five


async def test_a_failed_send_drops_its_batch_only_and_is_logged_once_per_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    sender = Sender(failing=frozenset({1, 2}))
    outcomes = ArmOutcomes(batch_size=2, interval_s=0.02, clock=clock)
    outcomes.start_sending(sender)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for i in range(6):
            outcomes.record(_outcome(i))
        # A failure ends that round; the rest waits for the next one.
        await _until(lambda: sender.calls == 3)
    assert sender.batches == [["r4", "r5"]]
    assert (outcomes.failed_sends, outcomes.unsent) == (2, 4)
    assert len(caplog.records) == 1
    assert "a batch of 2 was not taken and is dropped" in caplog.records[0].getMessage()
    await outcomes.close()


async def test_close_gives_up_after_one_failed_send_and_drops_what_is_left() -> None:
    sender = Sender(failing=frozenset({1}))
    outcomes = ArmOutcomes(batch_size=2, interval_s=60)
    outcomes.start_sending(sender)
    for i in range(5):
        outcomes.record(_outcome(i))
    await outcomes.close()  # before the sending task ran: close sends them
    assert sender.calls == 1
    assert (outcomes.waiting, outcomes.unsent) == (0, 5)


async def test_close_without_a_start_drops_what_is_waiting() -> None:
    outcomes = ArmOutcomes()
    outcomes.record(_outcome(0))
    await outcomes.close()
    assert (outcomes.waiting, outcomes.unsent) == (0, 1)


def test_a_calls_cost_is_the_backends_figure_else_its_tokens_at_the_models_prices() -> None:
    prices = common_pb2.CostProfile(
        usd_per_input_token=1e-6, usd_per_output_token=3e-6, usd_per_request=1e-4
    )
    stated = common_pb2.Usage(input_tokens=10, output_tokens=5, cost_usd=0.25)
    assert call_cost_usd(stated, prices) == 0.25
    counted = common_pb2.Usage(input_tokens=10, output_tokens=5)
    assert call_cost_usd(counted, prices) == pytest.approx(10e-6 + 15e-6 + 1e-4)
    assert call_cost_usd(counted, None) == 0.0
