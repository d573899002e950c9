"""`ArmOutcomes`' log of a failed send: its whole line, its reason and how often it is
written (killing mutmut's survivors in `gateway.arm_outcomes.ArmOutcomes._send_failed`)."""

from __future__ import annotations

import logging

import grpc
import pytest

from modelyard.gateway.arm_outcomes import ArmOutcomes
from modelyard_client.v1 import hotswap_pb2

LOGGER = "modelyard.gateway.arm_outcomes"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FailingSender:
    """Fails every batch with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def __call__(self, batch: hotswap_pb2.OutcomeBatch) -> object:
        raise self.error


def _outcome(i: int) -> hotswap_pb2.ArmOutcome:
    return hotswap_pb2.ArmOutcome(split_id="ab-1", arm="a", request_id=f"r{i}", latency_ms=1.0)


async def _fail_sends(error: Exception, clock: Clock, at: list[float], batch: int = 2) -> None:
    """One failed send of `batch` outcomes at each of the clock readings `at`."""
    outcomes = ArmOutcomes(interval_s=3600.0, clock=clock)  # only the flushes below send
    outcomes.start_sending(FailingSender(error))
    try:
        for i, now in enumerate(at):
            clock.now = now
            for j in range(batch):
                outcomes.record(_outcome(i * batch + j))
            assert not await outcomes.flush()
    finally:
        await outcomes.close()


LINE = (
    "arm outcomes: a batch of {} was not taken and is dropped ({}); {} batches failed since start"
)


async def test_a_failed_send_is_logged_at_once_then_not_again_for_10_s(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    error = ConnectionError("the hot-swap service is away")
    # The clock starts at 0: the first failure is 10 s after "never", and is logged.
    await _fail_sends(error, Clock(0.0), [0.0, 9.999, 10.0])
    reason = repr(error)
    assert [r.getMessage() for r in caplog.records] == [
        LINE.format(2, reason, 1),
        LINE.format(2, reason, 3),
    ]


async def test_a_refused_rpc_is_logged_by_its_status_and_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        details="failed to connect to all addresses",
        debug_error_string="",
    )
    await _fail_sends(error, Clock(1000.0), [1000.0], batch=3)
    assert [r.getMessage() for r in caplog.records] == [
        LINE.format(3, "UNAVAILABLE: failed to connect to all addresses", 1)
    ]
