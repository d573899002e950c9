"""What the calls a split routed did, sent to the hot-swap service in batches.

Each call an A/B test or a canary swap routed to one of its arms ends in one
`ArmOutcome`, built from the figures the gateway records of the arm model's
first attempt (`GatewayCore._stream_one`: the same start, first piece, end and
cost its `PerformanceTracker` gets, so a split's arms are judged on the very
measurement that selection and the circuit read). Which calls count:

- finished: succeeded, with its latency, its time to the first piece (streamed
  calls only: `Generate`'s caller waits for the whole) and its cost;
- failed: the arm's model failed the call once it was sent to its backend (a
  backend error or refusal, a truncated or cut stream, the deadline passed),
  fallback models or not; or it could not be sent, for the model's own doing
  (`ARM_CANNOT_SERVE`: unknown, not servable, no usable deployment);
- not reported: a refusal before the backend for the request's own fault
  (invalid for the model, the caller's rate limit), and a call the caller
  cancels before its answer finished.

`ArmOutcomes.record` only appends to a
bounded buffer; a background task sends what the buffer holds through
`HotSwapService.ReportOutcomes` every `interval_s` (100 ms), sooner once
`batch_size` (500) outcomes wait.

The figures are best-effort: reporting never blocks or fails a call. Beyond
`limit` waiting outcomes the oldest are dropped (counted in `dropped`, logged
at most once per 10 s); a batch whose send fails (the service unreachable,
slow, or not built yet) is logged, at most once per 10 s, and dropped, never
retried, so a service that is away costs the gateway nothing but that line.
`close` sends what is left, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from modelyard.security.channels import PLAINTEXT, InternalChannels
from modelyard_client.channel import CHANNEL_OPTIONS
from modelyard_client.errors import BackendUnavailable, ModelNotFound
from modelyard_client.v1 import common_pb2, hotswap_pb2, hotswap_pb2_grpc

log = logging.getLogger(__name__)

INTERVAL_S = 0.1  # how often waiting outcomes are sent
BATCH_SIZE = 500  # outcomes in one batch at most; this many waiting are sent at once
LIMIT = 20_000  # outcomes waiting at most: 40 batches, 2 s of a busy gateway's calls
SEND_TIMEOUT_S = 2.0
LOG_EVERY_S = 10.0  # drops and failed sends: one line per this long at most

# Sends one batch; raising means the batch was not taken.
Send = Callable[[hotswap_pb2.OutcomeBatch], Awaitable[object]]


# Refusals before the backend call that are the arm's model's doing (unknown, not
# servable, no usable deployment): they count against the arm. Any other refusal
# before it (the request's own fault, the caller's budget) is not the arm's.
ARM_CANNOT_SERVE = (BackendUnavailable, ModelNotFound)


@dataclass(frozen=True, slots=True)
class ArmCall:
    """One call a split routed to an arm; `outcome` once its attempt has ended."""

    split_id: str
    arm: str
    model_id: str
    request_id: str
    streamed: bool  # the caller reads pieces as they come (GenerateStream): ttft counts

    def outcome(
        self, failed: bool, latency_s: float = 0.0, ttft_s: float = 0.0, cost_usd: float = 0.0
    ) -> hotswap_pb2.ArmOutcome:
        """The outcome of the call's attempt: its start to its end and to its first piece
        (0: none came), and what it cost, as the gateway recorded them."""
        return hotswap_pb2.ArmOutcome(
            split_id=self.split_id,
            arm=self.arm,
            request_id=self.request_id,
            failed=failed,
            latency_ms=latency_s * 1000,
            ttft_ms=ttft_s * 1000 if self.streamed else 0.0,
            cost_usd=cost_usd,
        )


def call_cost_usd(
    usage: common_pb2.Usage, cost: common_pb2.CostProfile | None, input_estimate: int = 0
) -> float:
    """What one call cost: the backend's own figure, else its usage at the model's prices
    (tokens, cached input tokens at their own price when the model has one, characters
    spoken, audio seconds, images); `input_estimate` stands for an input count the
    backend did not report."""
    if usage.cost_usd or cost is None:
        return usage.cost_usd
    inputs = usage.input_tokens or input_estimate
    cached = min(usage.cached_input_tokens, inputs) if cost.usd_per_cached_input_token else 0
    return (
        (inputs - cached) * cost.usd_per_input_token
        + cached * cost.usd_per_cached_input_token
        + usage.output_tokens * cost.usd_per_output_token
        + usage.characters * cost.usd_per_character
        + usage.audio_seconds * cost.usd_per_audio_second
        + usage.images * cost.usd_per_image
        + cost.usd_per_request
    )


class ArmOutcomes:
    """The gateway's reporter of arm outcomes (see the module docstring)."""

    def __init__(
        self,
        *,
        limit: int = LIMIT,
        batch_size: int = BATCH_SIZE,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.dropped = 0  # outcomes dropped for want of room, since start
        self.failed_sends = 0  # batches not taken, since start
        self.unsent = 0  # outcomes of those batches, and those `close` could not send
        self._waiting: deque[hotswap_pb2.ArmOutcome] = deque(maxlen=limit)
        self._full = asyncio.Event()
        self._clock = clock
        self._drops_logged = 0  # `dropped` when it was last logged
        self._dropped_logged_at = -LOG_EVERY_S
        self._send_failure_logged_at = -LOG_EVERY_S
        self._send: Send | None = None
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None

    @property
    def waiting(self) -> int:
        """Outcomes recorded and not sent yet."""
        return len(self._waiting)

    def record(self, outcome: hotswap_pb2.ArmOutcome) -> None:
        """Queue `outcome` for the next batch; never blocks (the oldest goes when full)."""
        waiting = self._waiting
        if len(waiting) == waiting.maxlen:
            self.dropped += 1
            now = self._clock()
            if now - self._dropped_logged_at >= LOG_EVERY_S:
                log.warning(
                    "arm outcomes: %d dropped, the oldest first, since the last report "
                    "(%d waiting is the limit): the hot-swap service is not taking them fast "
                    "enough",
                    self.dropped - self._drops_logged,
                    waiting.maxlen,
                )
                self._dropped_logged_at, self._drops_logged = now, self.dropped
        waiting.append(outcome)
        if len(waiting) >= self.batch_size:
            self._full.set()

    def start(self, address: str, channels: InternalChannels = PLAINTEXT) -> None:
        """Send to the hot-swap service at `address` from now on, until `close`."""
        self._channel = channels.open(address, CHANNEL_OPTIONS)
        stub = hotswap_pb2_grpc.HotSwapServiceStub(self._channel)

        async def send(batch: hotswap_pb2.OutcomeBatch) -> object:
            return await stub.ReportOutcomes(batch, timeout=SEND_TIMEOUT_S)

        self.start_sending(send)

    def start_sending(self, send: Send) -> None:
        """Send each batch with `send` from now on, until `close`."""
        self._send = send
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the sending task, then send what is still waiting: one try, and what a
        failed send leaves is dropped, so a service that is away does not hold a stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not await self.flush():
            self.unsent += len(self._waiting)
            self._waiting.clear()
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    async def flush(self) -> bool:
        """Send the outcomes waiting now, in batches of at most `batch_size`, until one send
        fails (that batch is dropped); whether every send succeeded."""
        if self._send is None:
            return False
        for _ in range(-(-len(self._waiting) // self.batch_size)):  # those waiting now only
            count = min(len(self._waiting), self.batch_size)
            batch = hotswap_pb2.OutcomeBatch(
                outcomes=[self._waiting.popleft() for _ in range(count)]
            )
            try:
                await self._send(batch)
            except Exception as exc:  # whatever went wrong, the call paths never hear of it
                self._send_failed(count, exc)
                return False
        return True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._full.wait()
            self._full.clear()
            await self.flush()

    def _send_failed(self, count: int, exc: Exception) -> None:
        self.failed_sends += 1
        self.unsent += count
        now = self._clock()
        if now - self._send_failure_logged_at >= LOG_EVERY_S:
            self._send_failure_logged_at = now
            reason = (
                f"{exc.code().name}: {exc.details()}"
                if isinstance(exc, grpc.aio.AioRpcError)
                else repr(exc)
            )
            log.warning(
                "arm outcomes: a batch of %d was not taken and is dropped (%s); "
                "%d batches failed since start",
                count,
                reason,
                self.failed_sends,
            )
