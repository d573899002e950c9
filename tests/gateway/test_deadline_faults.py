"""Deadlines at every hop, through the real gateway and the openai_compat engine, against a fake
upstream that is silent, late, or stalls (issue 11, item 4).

The issue's times (a first token after 20 s, a stall of 30 s after 20 tokens)
are scaled down: the gateway's deadlines are 0.3 s here, the fake's pauses
5 s, so a deadline that did not act would show as a call of 5 s or more. Each
fault is run with the backend in the gateway's process and behind its own
gRPC server, and each checks what the upstream saw (one request, then the
client gone) as well as what the caller got.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import pytest
from backends.openai_compat.openai_fake import MODEL, FakeUpstream, chunk, request
from conftest import StackFactory

from modelyard.config import parse_config
from modelyard_client.errors import (
    BackendUnavailable,
    FirstTokenTimeout,
    ModelyardError,
    StreamTruncated,
    error_from_rpc,
)
from modelyard_client.v1 import gateway_pb2_grpc

PAUSE_S = 5.0  # the fake's silence: far beyond every deadline under test


def _config(url: str, timeouts: str, profile: str = "", retries: str = "{}") -> str:
    profiles = f"\n      model_profiles:\n        fake-model: {profile}" if profile else ""
    return f"""
model_system:
  gateway:
    timeouts: {timeouts}
    retries: {retries}
  backends:
    custom:
      kind: openai_compat
      endpoint: {url}
      models: [fake-model]{profiles}
"""


@dataclass
class Gateway:
    address: str
    backend: str  # how the gateway's errors name the backend


@pytest.fixture(params=["in process", "over gRPC"])
def path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


async def _gateway(make_stack: StackFactory, path: str, config_text: str) -> Gateway:
    config = parse_config(config_text)
    if path == "in process":
        stack = await make_stack(
            roles=("registry", "gateway", "backend-openai-compat"), config=config
        )
        return Gateway(stack.address, "backend 'openai_compat' (in process)")
    backend = await make_stack(roles=("registry", "backend-openai-compat"), config=config)
    gateway = await make_stack(roles=("gateway",), registry_address=backend.address, config=config)
    return Gateway(gateway.address, f"backend 'openai_compat' at {backend.address}")


@dataclass
class Outcome:
    texts: list[str]
    error: ModelyardError | None
    rpc: grpc.aio.AioRpcError | None
    seconds: float  # from the call's start to its end
    after_last_chunk_s: float  # from the last chunk received (or the start) to the end


async def _call(address: str, timeout_s: float | None = None) -> Outcome:
    texts: list[str] = []
    error = rpc = None
    started = last = time.monotonic()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            async with asyncio.timeout(10):  # the test's own guard
                async for out in stub.GenerateStream(request(), timeout=timeout_s):
                    texts.append(out.text)
                    last = time.monotonic()
        except grpc.aio.AioRpcError as exc:
            rpc, error = exc, error_from_rpc(exc)
    ended = time.monotonic()
    return Outcome(texts, error, rpc, ended - started, ended - last)


async def _disconnected(fake: FakeUpstream) -> None:
    await asyncio.wait_for(fake.disconnected.wait(), timeout=2)


_SHORT = "{first_token_timeout_ms: 300, stall_timeout_ms: 300}"


async def test_an_upstream_that_accepts_and_never_answers_ends_at_the_first_token_deadline(
    make_stack: StackFactory, fake: FakeUpstream, path: str
) -> None:
    fake.accept_then_silent()
    gateway = await _gateway(make_stack, path, _config(fake.url, _SHORT))
    outcome = await _call(gateway.address)
    assert 0.3 <= outcome.seconds < 1.5, outcome.seconds
    assert type(outcome.error) is FirstTokenTimeout
    assert outcome.rpc is not None and outcome.rpc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert outcome.error.message == (
        f"'{MODEL}' on {gateway.backend} sent nothing within its first-token deadline of 0.3s"
    )
    assert outcome.texts == []
    assert len(fake.bodies) == 1  # tried once, not again on the same route
    await _disconnected(fake)


async def test_a_first_token_later_than_its_deadline_ends_the_call_then(
    make_stack: StackFactory, fake: FakeUpstream, path: str
) -> None:
    # The 200 and the headers at once, the first token after the pause (the 20 s).
    events = [chunk("late"), chunk(finish_reason="stop")]
    fake.stream_with_pause(events, pause_before=0, pause_s=PAUSE_S)
    gateway = await _gateway(make_stack, path, _config(fake.url, _SHORT))
    outcome = await _call(gateway.address)
    assert 0.3 <= outcome.seconds < 1.5, outcome.seconds
    assert type(outcome.error) is FirstTokenTimeout
    assert outcome.error.reason == "FIRST_TOKEN_TIMEOUT"
    assert outcome.texts == []
    assert len(fake.bodies) == 1
    await _disconnected(fake)


async def test_a_stream_that_stalls_after_20_tokens_is_cut_at_the_stall_deadline(
    make_stack: StackFactory, fake: FakeUpstream, path: str
) -> None:
    tokens = [chunk("t;") for _ in range(20)]
    fake.stream_with_pause([*tokens, chunk(finish_reason="stop")], pause_before=20, pause_s=PAUSE_S)
    gateway = await _gateway(make_stack, path, _config(fake.url, _SHORT))
    outcome = await _call(gateway.address)
    assert 0.3 <= outcome.after_last_chunk_s < 1.5, outcome.after_last_chunk_s
    assert outcome.seconds < 2.0
    assert "".join(outcome.texts) == "t;" * 20  # all 20 reached the caller, no finish
    # Output had reached the caller: ABORTED (StreamTruncated), the stall as its cause.
    assert type(outcome.error) is StreamTruncated
    assert outcome.rpc is not None and outcome.rpc.code() == grpc.StatusCode.ABORTED
    chunks = len(outcome.texts)
    assert outcome.error.message == (
        f"the answer of '{MODEL}' was cut short after {chunks} chunk{'s' * (chunks != 1)} "
        f"(40 characters) had reached the caller: '{MODEL}' on {gateway.backend} stalled: "
        f"nothing for 0.3s after {chunks} piece{'s' * (chunks != 1)} (its stall deadline)"
    )
    assert len(fake.bodies) == 1
    await _disconnected(fake)


async def test_a_model_profile_s_first_token_deadline_wins_over_the_gateway_s(
    make_stack: StackFactory, fake: FakeUpstream
) -> None:
    events = [chunk("late"), chunk(finish_reason="stop")]
    fake.stream_with_pause(events, pause_before=0, pause_s=0.6)  # late for the gateway's 0.3 s
    text = _config(fake.url, _SHORT, profile="{first_token_timeout_ms: 2000}")
    gateway = await _gateway(make_stack, "in process", text)
    outcome = await _call(gateway.address)
    assert outcome.error is None
    assert "".join(outcome.texts) == "late"
    assert 0.6 <= outcome.seconds < 1.5


async def test_the_caller_s_own_short_deadline_ends_every_hop(
    make_stack: StackFactory, fake: FakeUpstream, path: str
) -> None:
    fake.accept_then_silent()
    long = "{first_token_timeout_ms: 30000, stall_timeout_ms: 30000}"
    gateway = await _gateway(make_stack, path, _config(fake.url, long))
    outcome = await _call(gateway.address, timeout_s=0.4)
    assert 0.4 <= outcome.seconds < 1.5, outcome.seconds
    assert outcome.rpc is not None and outcome.rpc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(fake.bodies) == 1
    await _disconnected(fake)  # the cancel reached the upstream connection


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose accept queue is full: a new connection's SYN goes unanswered (Linux drops
    it and the client retransmits), as a host behind a black-holing firewall."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.1)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


async def test_an_upstream_that_never_completes_the_connection_ends_at_the_connect_timeout(
    make_stack: StackFactory, unanswered_port: int
) -> None:
    # The first-token deadline is longer: the connect timeout is what ends the attempt.
    # One attempt: an unreachable upstream is the retry rules' to try again (gateway.retries).
    timeouts = "{connect_timeout_ms: 200, first_token_timeout_ms: 5000}"
    url = f"http://127.0.0.1:{unanswered_port}"
    text = _config(url, timeouts, retries="{max_attempts_per_call: 1}")
    gateway = await _gateway(make_stack, "in process", text)
    outcome = await _call(gateway.address)
    assert 0.2 <= outcome.seconds < 1.0, outcome.seconds
    assert type(outcome.error) is BackendUnavailable
    assert outcome.error.message == f"upstream 'custom' at {url}/v1 is unreachable: timed out"
