"""A backend process killed while 100 streams run through it: none ends as a normal finish.

The gateway (with the registry and a spare backend, in this process) sends
`custom/model-a` calls to a backend service in its own process (`modelyard
serve backend-openai-compat`), which streams from a slow fake OpenAI
upstream; each call names `spare/model-a` as its fallback. Half the calls are
streaming when the backend process is killed (SIGKILL, by its PID); the other
half start after. A call that had started streaming ends with an explicit
error saying how much it delivered; one that had not fails over and is served
whole by the spare; no call ends as if finished without its finish reason.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from conftest import StackFactory, free_port

from modelyard.config import parse_config
from modelyard_client.errors import ModelNotFound
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

PIECES = 40  # 40 pieces 25 ms apart: a stream of about a second


@dataclass
class Ended:
    started_streaming: bool
    model_id: str
    finish: int
    error_code: grpc.StatusCode | None = None
    error: str = ""


@pytest.fixture
async def slow() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream(models=["model-a"])
    fake.echo_model(pieces=PIECES, piece_delay_s=0.025)
    await fake.start()
    yield fake
    await fake.stop()


async def _call(
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, streaming: asyncio.Event | None
) -> Ended:
    request = gateway_pb2.GenerateRequest(model="custom/model-a", fallback_models=["spare/model-a"])
    request.input.text = "hi"
    request.params.max_tokens = 64
    chunks: list[gateway_pb2.GenerateChunk] = []
    try:
        async for chunk in gateway.GenerateStream(request, timeout=20):
            chunks.append(chunk)
            if streaming is not None and len(chunks) == 2:
                streaming.set()
    except grpc.aio.AioRpcError as exc:
        return Ended(bool(chunks), "", 0, exc.code(), exc.details() or "")
    return Ended(True, chunks[0].model_id, chunks[-1].finish_reason)


async def test_killing_a_backend_under_100_streams_fails_over_or_ends_each_explicitly(
    make_stack: StackFactory, slow: FakeUpstream, tmp_path: Path
) -> None:
    config = f"""
model_system:
  backends:
    spare: {{kind: openai_compat, endpoint: "{slow.url}"}}
"""
    stack = await make_stack(
        roles=("registry", "gateway", "backend-openai-compat"), config=parse_config(config)
    )
    remote_config = tmp_path / "remote.yaml"
    remote_config.write_text(
        f'model_system:\n  backends:\n    custom: {{kind: openai_compat, endpoint: "{slow.url}"}}\n'
    )
    port = free_port()
    backend = await asyncio.create_subprocess_exec(
        *[
            str(Path(sys.executable).parent / "modelyard"),
            "serve",
            "backend-openai-compat",
            "--registry",
            stack.address,
            "--listen",
            f"127.0.0.1:{port}",
            "--config",
            str(remote_config),
            "--data-dir",
            str(tmp_path / "remote-data"),
            "--metrics-listen",
            "off",
            "--log-level",
            "WARNING",
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
    )
    try:
        assert stack.view is not None
        async with asyncio.timeout(30):
            while True:  # until the gateway's catalog holds the remote backend's model
                try:
                    if stack.view.get("custom/model-a").deployments:
                        break
                except ModelNotFound:
                    pass
                await asyncio.sleep(0.05)
        async with grpc.aio.insecure_channel(stack.address) as channel:
            gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
            streaming = [asyncio.Event() for _ in range(50)]
            before = [asyncio.create_task(_call(gateway, e)) for e in streaming]
            async with asyncio.timeout(10):
                for event in streaming:
                    await event.wait()  # all 50 are streaming from the remote backend
            os.kill(backend.pid, signal.SIGKILL)
            await asyncio.wait_for(backend.wait(), 10)
            after = [asyncio.create_task(_call(gateway, None)) for _ in range(50)]
            ended_before = await asyncio.gather(*before)
            ended_after = await asyncio.gather(*after)
    finally:
        if backend.returncode is None:
            backend.kill()
            await backend.wait()

    for ended in ended_before:  # streaming when the backend died
        assert ended.started_streaming
        assert ended.error_code == grpc.StatusCode.ABORTED, ended
        assert "was cut short after" in ended.error and "had reached the caller" in ended.error
    for ended in ended_after:  # started after: served whole by the spare
        assert ended.error_code is None, ended
        assert (ended.model_id, ended.finish) == ("spare/model-a", common_pb2.FINISH_REASON_STOP)
