"""Split: registry, selector, hot-swap, gateway and one backend as five processes.

Each is `modelyard serve ROLE` on its own free 127.0.0.1 port, stopped by its
PID; the backend is backend-openai-compat in front of the fake OpenAI upstream
(tests/backends/openai_compat/openai_fake.py, OpenAI's chat-completions wire
format) serving model-a and model-b, each answer naming its model. The gateway
streams an answer, WatchModels and WatchRoutes see changes, the selector picks
from the registry's catalog, and a swap moves an alias from model-a to model-b
(the answers then come from model-b). tests/security/test_tls_deployments.py
runs three of these roles split over mTLS; this one runs all five, plaintext.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest
from backends.openai_compat.openai_fake import FakeUpstream
from deployments.serve_process import ServeProcess, start_all

from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    hotswap_pb2,
    hotswap_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    selector_pb2,
    selector_pb2_grpc,
)

A, B = "custom/model-a", "custom/model-b"
ALIAS = "chat-split"
STARTUP_S = 60.0  # until the gateway's catalog copy holds the backend's models
CHANGE_S = 10.0  # a watched change or a switched route shows within this


@dataclass
class Split:
    registry: ServeProcess
    selector: ServeProcess
    hotswap: ServeProcess
    gateway: ServeProcess
    backend: ServeProcess


@pytest.fixture
async def split(upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[Split]:
    upstream.echo_model(piece_delay_s=0.05)  # pieces apart in time: the stream shows them apart
    backend_config = tmp_path / "backend.yaml"
    backend_config.write_text(
        "model_system:\n"
        f"  backends:\n    custom: {{kind: openai_compat, endpoint: '{upstream.url}'}}\n"
    )
    registry = ServeProcess("registry", ["registry"], tmp_path)
    started = [registry]
    try:
        await start_all(registry)
        at = ["--registry", registry.address]
        selector = ServeProcess("selector", ["selector", *at], tmp_path)
        hotswap = ServeProcess("hotswap", ["hotswap", *at], tmp_path)
        backend = ServeProcess(
            "backend", ["backend-openai-compat", *at, "--config", str(backend_config)], tmp_path
        )
        started += [selector, hotswap, backend]
        await start_all(selector, hotswap, backend)
        gateway = ServeProcess("gateway", ["gateway", *at, "--hotswap", hotswap.address], tmp_path)
        started.append(gateway)
        await start_all(gateway)
        yield Split(registry, selector, hotswap, gateway, backend)
    finally:
        for process in reversed(started):
            await process.stop()


def _request(model: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=model)
    request.input.text = "hi"
    request.params.max_tokens = 8
    return request


async def _stream(
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, model: str
) -> list[gateway_pb2.GenerateChunk] | grpc.aio.AioRpcError:
    try:
        return [c async for c in gateway.GenerateStream(_request(model), timeout=10)]
    except grpc.aio.AioRpcError as err:
        return err


async def _stream_until(
    gateway: gateway_pb2_grpc.GatewayServiceAsyncStub, model: str, text: str, within_s: float
) -> list[gateway_pb2.GenerateChunk]:
    """Stream `model` until the answer is `text` (a catalog copy or a route may lag)."""
    deadline = time.monotonic() + within_s
    while True:
        chunks = await _stream(gateway, model)
        if not isinstance(chunks, grpc.aio.AioRpcError) and "".join(c.text for c in chunks) == text:
            return chunks
        if time.monotonic() > deadline:
            raise AssertionError(f"{model} never answered {text!r}: {chunks}")
        await asyncio.sleep(0.05)


async def _swap(hotswap: hotswap_pb2_grpc.HotSwapServiceAsyncStub, model_id: str) -> None:
    """Swap ALIAS to `model_id` and return once it has switched."""
    started = await hotswap.Swap(
        hotswap_pb2.SwapRequest(alias=ALIAS, target_model_id=model_id, grace_period_ms=1),
        timeout=10,
    )
    async with asyncio.timeout(30):
        async for status in hotswap.WatchSwap(hotswap_pb2.GetSwapRequest(swap_id=started.swap_id)):
            assert status.phase != hotswap_pb2.SwapStatus.PHASE_FAILED, status.error
            if status.phase >= hotswap_pb2.SwapStatus.PHASE_SWITCHED:
                return


async def test_five_roles_in_five_processes_generate_watch_and_swap(
    split: Split, upstream: FakeUpstream
) -> None:
    async with (
        grpc.aio.insecure_channel(split.registry.address) as registry_channel,
        grpc.aio.insecure_channel(split.selector.address) as selector_channel,
        grpc.aio.insecure_channel(split.hotswap.address) as hotswap_channel,
        grpc.aio.insecure_channel(split.gateway.address) as gateway_channel,
    ):
        registry = registry_pb2_grpc.RegistryServiceStub(registry_channel)
        hotswap = hotswap_pb2_grpc.HotSwapServiceStub(hotswap_channel)
        gateway = gateway_pb2_grpc.GatewayServiceStub(gateway_channel)
        models = registry.WatchModels(registry_pb2.WatchModelsRequest())
        routes = hotswap.WatchRoutes(hotswap_pb2.WatchRoutesRequest())
        # Generate (stream): the gateway calls the backend process the registry lists.
        chunks = await _stream_until(gateway, A, "model-a;" * 3, STARTUP_S)
        assert [c.text for c in chunks if c.text] == ["model-a;"] * 3  # streamed, piece by piece
        assert chunks[0].model_id == A
        assert chunks[-1].finish_reason == common_pb2.FINISH_REASON_STOP
        # The selector process reads the same catalog.
        picked = await selector_pb2_grpc.SelectorServiceStub(selector_channel).Select(
            selector_pb2.SelectRequest(candidates=[A, B]), timeout=10
        )
        assert picked.model_id in {A, B}
        # Swap: the alias is created on model-a, then moved to model-b.
        await _swap(hotswap, A)
        await _stream_until(gateway, ALIAS, "model-a;" * 3, CHANGE_S)
        await _swap(hotswap, B)
        chunks = await _stream_until(gateway, ALIAS, "model-b;" * 3, CHANGE_S)
        assert chunks[0].model_id == B
        assert upstream.bodies[-1]["model"] == "model-b"  # the backend asked the upstream for it
        # Watch: the route table's changes, after its replay, name both swaps in order.
        seen_routes: list[str] = []
        async with asyncio.timeout(CHANGE_S):
            async for change in routes:
                if (
                    change.kind == hotswap_pb2.RouteChange.KIND_UPSERTED
                    and change.route.alias == ALIAS
                ):
                    seen_routes.append(change.route.model_id)
                    if seen_routes[-1] == B:
                        break
        assert seen_routes[-2:] == [A, B]
        # Watch: a catalog change made on the registry reaches its watcher.
        await registry.UpdateHealth(
            registry_pb2.UpdateHealthRequest(
                id=B, health=common_pb2.HEALTH_STATUS_DEGRADED, reason="split drill"
            ),
            timeout=10,
        )
        async with asyncio.timeout(CHANGE_S):
            async for model_change in models:
                if (
                    model_change.kind == registry_pb2.ModelChange.KIND_UPSERTED
                    and model_change.model.id == B
                    and model_change.model.health == common_pb2.HEALTH_STATUS_DEGRADED
                ):
                    break
        models.cancel()
        routes.cancel()
    # Every process serves /metrics; the gateway's counts the streams it answered.
    for process in (split.registry, split.selector, split.hotswap, split.backend, split.gateway):
        async with aiohttp.ClientSession() as session, session.get(process.metrics_url) as answer:
            assert answer.status == 200, process.name
            text = await answer.text()
        assert "modelyard_requests_total" in text, process.name
    ok_streams = (
        'modelyard_requests_total{rpc_method="modelyard.v1.GatewayService/GenerateStream",'
        'rpc_response_status_code="OK"}'
    )
    assert ok_streams in text
