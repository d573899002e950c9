"""Three gateway processes sharing one key store: a revocation is seen by all within 1 s.

Each replica is a real process (`security.auth_replica`) with its own data
directory and the same key store file. First by polling the store's revision
(every 250 ms, the default); then with the poll made too slow to matter (30 s)
and a Redis configured, so only the pub/sub announcement can carry the change.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.redis_server import RedisServer

from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, keys_pb2, keys_pb2_grpc

REPLICAS = 3
ADMIN_KEY = "admin-key-for-the-replica-tests"
SERVICE_KEY = "service-key-for-the-replica-tests"
MODEL = "scripted/echo"


def _start(
    tmp_path: Path, pytestconfig: pytest.Config, refresh: str, redis_url: str | None
) -> list[subprocess.Popen[str]]:
    pythonpath = [str(p) for p in pytestconfig.getini("pythonpath")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [*pythonpath, os.environ.get("PYTHONPATH")])),
        "MODELYARD_ADMIN_KEY": ADMIN_KEY,
        "MODELYARD_SERVICE_KEY": SERVICE_KEY,
    }
    store = tmp_path / "shared" / "keys.sqlite3"
    args = [str(store), refresh, *([redis_url] if redis_url else [])]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "security.auth_replica", str(tmp_path / f"r{i}"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for i in range(REPLICAS)
    ]


def _addresses(procs: list[subprocess.Popen[str]]) -> list[str]:
    addresses = []
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # READY <address>, or EOF when it died
        assert line.startswith("READY "), f"replica did not start: {line!r}"
        addresses.append(line.split()[1])
    return addresses


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.stdin is not None:
            proc.stdin.close()  # asks it to drain and exit
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()  # this test's own child, by its handle
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def polling(tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[list[str]]:
    procs = _start(tmp_path, pytestconfig, "250ms", None)
    try:
        yield _addresses(procs)
    finally:
        _stop(procs)


@pytest.fixture
def announcing(tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[list[str]]:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    procs = _start(tmp_path, pytestconfig, "30s", redis_server.url)
    try:
        yield _addresses(procs)
    finally:
        _stop(procs)
        redis_server.stop()


async def _accepted(stub: gateway_pb2_grpc.GatewayServiceAsyncStub, secret: str) -> bool:
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.text = "hi"
    try:
        await stub.Generate(request, metadata=(("x-api-key", secret),), timeout=5)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
        return False
    return True


async def _seconds_until(
    stub: gateway_pb2_grpc.GatewayServiceAsyncStub, secret: str, accepted: bool, started: float
) -> float:
    """Seconds from `started` until the replica answers `secret` as `accepted` (10 s at most)."""
    while await _accepted(stub, secret) is not accepted:
        assert time.monotonic() - started < 10, "the replica never saw the change"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def _revocation_times(addresses: list[str]) -> tuple[list[float], list[float]]:
    """Seconds each replica took to accept a new key, then to refuse it once revoked."""
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    try:
        stubs = [gateway_pb2_grpc.GatewayServiceStub(c) for c in channels]
        keys = keys_pb2_grpc.KeyServiceStub(channels[0])
        admin = (("x-api-key", ADMIN_KEY),)
        started = time.monotonic()
        issued = await keys.CreateKey(keys_pb2.CreateKeyRequest(owner="ana"), metadata=admin)
        seen = await asyncio.gather(
            *(_seconds_until(s, issued.secret, True, started) for s in stubs)
        )
        started = time.monotonic()
        await keys.RevokeKey(keys_pb2.RevokeKeyRequest(id=issued.key.id), metadata=admin)
        refused = await asyncio.gather(
            *(_seconds_until(s, issued.secret, False, started) for s in stubs)
        )
        return list(seen), list(refused)
    finally:
        for channel in channels:
            await channel.close(grace=None)


async def test_three_gateways_polling_one_store_see_a_revocation_within_a_second(
    polling: list[str],
) -> None:
    seen, refused = await _revocation_times(polling)
    assert max(seen) < 1.0, seen
    assert max(refused) < 1.0, refused


async def test_with_redis_the_announcement_carries_the_revocation_without_the_poll(
    announcing: list[str],
) -> None:
    """The poll runs every 30 s here: within 1 s only the pub/sub message can explain it."""
    seen, refused = await _revocation_times(announcing)
    assert max(seen) < 1.0, seen
    assert max(refused) < 1.0, refused
