"""`modelyard up --workers 2` as an operator runs it: two gateway processes on one port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families

from modelyard.assembly.workers import PRIMARY_PID_ENV, follow_primary
from modelyard_client.errors import ModelNotFound, QuotaExceeded, error_from_rpc
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc, registry_pb2, registry_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
MODEL = "custom/model-a"
RPM = 10  # the provider's requests per minute, shared by both processes
CONNECTIONS = 24


@dataclass
class Up:
    process: asyncio.subprocess.Process
    address: str
    worker_pid: int
    data_dir: Path
    metrics_url: str


def connections_of(pid: int, port: int) -> int:
    """Established TCP connections to `port` whose socket process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


@pytest.fixture
async def up(upstream: FakeUpstream, models_dir: Path, tmp_path: Path) -> AsyncIterator[Up]:
    address = f"127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(
        CUSTOM_AI_PROVIDER_URL=upstream.url,
        MODELYARD_QUOTA_PER_PROVIDER=f"custom:rpm={RPM}",
        OTEL_TRACES_EXPORTER="none",
        PYTHONPATH=os.pathsep.join([str(ROOT / "services"), str(ROOT / "clients" / "python")]),
    )
    config = tmp_path / "modelyard.yaml"  # the response cache on, in no Redis
    config.write_text(
        "model_system:\n"
        "  gateway: {cache: {enabled: true}}\n"
        f"  backends:\n    custom: {{kind: openai_compat, endpoint: '{upstream.url}'}}\n"
    )
    stderr = tmp_path / "stderr.log"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "modelyard.cli", "up", "--workers", "2"),
        *("--listen", address, "--http-listen", f"127.0.0.1:{free_port()}"),
        *("--metrics-listen", metrics, "--data-dir", str(tmp_path / "data")),
        *("--models-dir", str(models_dir), "--grace", "2", "--config", str(config)),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr.open("w"),  # a file the child writes, opened once
        cwd=tmp_path,
    )
    assert process.stdout is not None
    worker_pid = 0
    async with asyncio.timeout(120):
        while line := (await process.stdout.readline()).decode():
            if line.startswith("modelyard: gateway worker 1 (pid "):
                worker_pid = int(line.split("(pid ")[1].split(")")[0])
            if line.strip() == f"modelyard:   model {MODEL}":
                break
    assert worker_pid, stderr.read_text()[-3000:]
    yield Up(process, address, worker_pid, tmp_path / "data", f"http://{metrics}/metrics")
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)  # by its pid
        await asyncio.wait_for(process.wait(), 30)


def _request() -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.text = "Hi"
    request.params.max_tokens = 8
    return request


async def _on_new_connections(address: str, n: int, call: object) -> list[object]:
    """`call(channel)` on `n` channels, each its own connection (the kernel picks a process
    per connection); what each returned, or the error it raised."""
    results: list[object] = []
    for _ in range(n):
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            try:
                results.append(await call(channel))  # type: ignore[operator]
            except grpc.aio.AioRpcError as exc:
                results.append(exc)
    return results


async def test_both_processes_serve_and_every_service_answers_on_the_shared_port(
    up: Up,
) -> None:
    options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own each
    channels = [grpc.aio.insecure_channel(up.address, options=options) for _ in range(16)]
    try:
        for number, channel in enumerate(channels):
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            listed = await registry.ListModels(registry_pb2.ListModelsRequest(), timeout=10)
            assert MODEL in [m.id for m in listed.models]
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await registry.GetModel(registry_pb2.GetModelRequest(id="custom/x"), timeout=10)
            error = error_from_rpc(missing.value)  # typed, whichever process took the call
            assert isinstance(error, ModelNotFound) and error.model_id == "custom/x"
            if number < RPM:  # within the provider's limit
                gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
                answer = await gateway.Generate(_request(), timeout=10)
                assert answer.text
        port = int(up.address.rsplit(":", 1)[1])
        held = {pid: connections_of(pid, port) for pid in (up.process.pid, up.worker_pid)}
        # The kernel gave each process some of the 16 connections, and both answered.
        assert sum(held.values()) == 16 and min(held.values()) > 0, held
    finally:
        for channel in channels:
            await channel.close(None)


async def test_a_rate_limit_holds_across_the_processes_exactly(up: Up) -> None:
    async def generate(channel: grpc.aio.Channel) -> object:
        return await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(_request(), timeout=10)

    results = await _on_new_connections(up.address, CONNECTIONS, generate)
    answered = [r for r in results if isinstance(r, gateway_pb2.GenerateResponse)]
    refused = [error_from_rpc(r) for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(answered) == RPM, results  # not RPM per process
    assert len(refused) == CONNECTIONS - RPM, results
    assert all(isinstance(e, QuotaExceeded) for e in refused), refused
    assert (up.data_dir / "rate-limits.shm").exists()
    # The primary's scrape counts every process's calls, each labelled with its process
    # (a refused call is counted just after its status went out: read until all are in).
    counted: dict[tuple[str, str], float] = {}
    for _ in range(50):
        counted = await _generate_counts(up.metrics_url)
        if sum(counted.values()) >= CONNECTIONS:
            break
        await asyncio.sleep(0.1)
    assert {worker for worker, _ in counted} == {"0", "1"}, counted
    assert sum(v for (_, status), v in counted.items() if status == "OK") == RPM, counted
    assert sum(counted.values()) == CONNECTIONS, counted


async def _generate_counts(metrics_url: str) -> dict[tuple[str, str], float]:
    """modelyard_requests_total of Generate by (worker, status), from one scrape."""
    counted = {}
    async with aiohttp.ClientSession() as session, session.get(metrics_url) as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "modelyard_requests_total" and sample.labels["rpc_method"].endswith(
                "/Generate"
            ):
                key = (sample.labels["worker"], sample.labels["rpc_response_status_code"])
                counted[key] = sample.value
    return counted


async def test_an_answer_cached_by_one_process_is_a_hit_in_the_other(
    up: Up, upstream: FakeUpstream
) -> None:
    request = _request()
    request.params.temperature = 0.0  # deterministic: cached

    async def generate(channel: grpc.aio.Channel) -> object:
        return await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(request, timeout=10)

    first = await _on_new_connections(up.address, 1, generate)
    calls = len(upstream.bodies)
    results = await _on_new_connections(up.address, 16, generate)  # both processes answer
    answers = [r for r in [*first, *results] if isinstance(r, gateway_pb2.GenerateResponse)]
    assert len(answers) == 17, results
    assert [a.cached for a in answers] == [False] + [True] * 16
    assert len(upstream.bodies) == calls  # no process asked the model again
    assert (up.data_dir / "response-cache.db").exists()


async def test_a_worker_that_dies_is_started_again_and_serves(up: Up) -> None:
    os.kill(up.worker_pid, signal.SIGKILL)
    stderr = up.data_dir.parent / "stderr.log"
    again = "gateway worker 1 started again (pid "
    for _ in range(300):  # 60 s at most
        if again in (log := stderr.read_text()):
            break
        await asyncio.sleep(0.2)
    assert f"gateway worker 1 (pid {up.worker_pid}) exited with status -9" in log
    new_pid = int(log.split(again)[1].split(")")[0])
    assert new_pid != up.worker_pid and not _gone(new_pid)
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(up.address, options=options) for _ in range(16)]
    try:
        for channel in channels:
            await registry_pb2_grpc.RegistryServiceStub(channel).ListModels(
                registry_pb2.ListModelsRequest(), timeout=10
            )
        port = int(up.address.rsplit(":", 1)[1])
        assert connections_of(new_pid, port) > 0  # the new worker takes its share again
    finally:
        for channel in channels:
            await channel.close(None)
    up.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(up.process.wait(), 30) == 0
    assert _gone(new_pid)


async def test_a_stop_ends_the_workers_too(up: Up) -> None:
    up.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(up.process.wait(), 30) == 0
    assert _gone(up.worker_pid)


def _gone(pid: int) -> bool:
    """No such process, or one that has exited and waits to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_a_worker_stops_once_its_primary_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    stopping = asyncio.Event()
    monkeypatch.setenv(PRIMARY_PID_ENV, str(os.getppid()))  # still this process's parent
    follow_primary(stopping)
    await asyncio.sleep(1.5)
    assert not stopping.is_set()
    gone = asyncio.Event()
    monkeypatch.setenv(PRIMARY_PID_ENV, str(os.getppid() + 1_000_000))  # not the parent
    follow_primary(gone)
    await asyncio.wait_for(gone.wait(), 5)
    stopping.set()  # ends the first watch
