"""Three gateway processes, one Redis or one shared-memory table, a thousand concurrent
requests: one shared limit.

The bound a token bucket promises over a burst is its capacity plus what it
refills meanwhile; the tests measure the burst's wall time (which contains the
limiter's) and allow exactly that refill, nothing more.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
import redis
from support.redis_server import RedisServer

from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

REPLICAS = 3
RPM = 100
TPM = 1000
REPLICA_MODULE = "ratelimit.ratelimit_replica"


@dataclass(frozen=True)
class Replicas:
    addresses: list[str]
    reset: Callable[[], None]  # every bucket full again


@pytest.fixture(scope="module", params=["redis", "shared_memory"])
def replicas(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
    pytestconfig: pytest.Config,
) -> Iterator[Replicas]:
    """Three gateway processes sharing the session Redis (fail_closed), or one table in a
    file they all map."""
    # The replica imports its module and `support` from the folders the tests import them from.
    pythonpath = [str(p) for p in pytestconfig.getini("pythonpath")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [*pythonpath, os.environ.get("PYTHONPATH")])),
    }
    if request.param == "redis":
        env |= {
            "MODELYARD_REDIS_URL": redis_server.url,
            "MODELYARD_RATE_LIMIT_FAILURE_POLICY": "fail_closed",  # over-admission would hide
            "MODELYARD_REDIS_TIMEOUT_S": "10",  # a loaded machine is not an outage here
        }
        reset: Callable[[], None] = lambda: _flush(redis_server.url)  # noqa: E731
    else:
        table = tmp_path_factory.mktemp("shared") / "limits"
        env["MODELYARD_RATE_LIMIT_SHARED_MEMORY"] = str(table)
        # Never rewritten under the mapped replicas; each test's model has buckets of its own,
        # full before their first use.
        reset = lambda: None  # noqa: E731
    procs: list[subprocess.Popen[str]] = []
    try:
        for i in range(REPLICAS):
            data_dir = tmp_path_factory.mktemp(f"replica{i}")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", REPLICA_MODULE, str(data_dir), str(RPM), str(TPM)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                    text=True,
                )
            )
        addresses = []
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the script prints READY or dies (EOF)
            assert line.startswith("READY "), f"replica did not start: {line!r}"
            addresses.append(line.split()[1])
        yield Replicas(addresses, reset)
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()  # asks it to drain and exit
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _flush(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.flushall()


async def _burst(
    addresses: list[str], model: str, sizes: list[int]
) -> tuple[list[tuple[int, grpc.StatusCode, gateway_pb2.GenerateResponse | None]], float]:
    """Send one request per entry of `sizes` (its max_tokens) at once, round-robin over
    the gateways; each answer with the index of the gateway that gave it, and the wall time."""
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]
    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))

        async def one(
            i: int, max_tokens: int
        ) -> tuple[int, grpc.StatusCode, gateway_pb2.GenerateResponse | None]:
            gateway = i % len(stubs)
            request = gateway_pb2.GenerateRequest(model=model)
            request.input.text = "hi"
            request.params.max_tokens = max_tokens
            try:
                response = await stubs[gateway].Generate(request, timeout=120)
            except grpc.aio.AioRpcError as err:
                return gateway, err.code(), None
            return gateway, grpc.StatusCode.OK, response

        started = time.monotonic()
        answers = await asyncio.gather(*(one(i, n) for i, n in enumerate(sizes)))
        return answers, time.monotonic() - started
    finally:
        for channel in channels:
            await channel.close(grace=None)


async def test_a_thousand_concurrent_requests_on_three_gateways_share_100_per_minute(
    replicas: Replicas,
) -> None:
    replicas.reset()
    answers, elapsed_s = await _burst(replicas.addresses, "scripted/rpm", [8] * 1000)
    codes = Counter(code for _, code, _ in answers)
    admitted = codes[grpc.StatusCode.OK]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    # The full bucket admits exactly 100; only its refill during the burst may add more.
    refill = math.floor(RPM / 60 * elapsed_s)
    assert RPM <= admitted <= RPM + refill, (admitted, elapsed_s)
    per_gateway = Counter(g for g, code, _ in answers if code == grpc.StatusCode.OK)
    assert len(per_gateway) == REPLICAS  # every replica drew from the one budget


async def test_tokens_per_minute_across_three_gateways_overshoots_by_less_than_one_request(
    replicas: Replicas,
) -> None:
    replicas.reset()
    # Varied sizes; the engine reports exactly what was reserved, so nothing is refunded.
    sizes = [5 + (i * 37) % 56 for i in range(400)]  # 5..60 max_tokens, 1 input token each
    answers, elapsed_s = await _burst(replicas.addresses, "scripted/tpm", sizes)
    codes = Counter(code for _, code, _ in answers)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    used = sum(r.usage.input_tokens + r.usage.output_tokens for _, _, r in answers if r is not None)
    largest = max(sizes) + 1
    refill = TPM / 60 * elapsed_s
    # No overshoot at all beyond the refill; short of the limit by less than one request.
    assert TPM - largest < used <= TPM + refill, (used, elapsed_s)
