"""The local backend's memory budget on the real Gemma 3 270M, through in-process gRPC.

The same GGUF file is served under two ids (two names in one models directory:
two llama.cpp instances), each estimated at about 450 MiB at n_ctx 2048 and 4 decode slots; a
budget of 500 MiB holds one of them. `max_loaded` is 2, so the memory budget,
not the count, is what refuses.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from conftest import StackFactory

from modelyard.config import ModelyardConfig, parse_config
from modelyard_client.errors import MemoryBudgetExceeded, error_from_rpc
from modelyard_client.v1 import (
    backend_pb2,
    backend_pb2_grpc,
    common_pb2,
    registry_pb2,
    registry_pb2_grpc,
)

pytestmark = pytest.mark.slow  # the real llama.cpp engine and model weights

A, B = "local/gemma-a", "local/gemma-b"


@pytest.fixture
def two_models(gemma_path: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("gemma-a", "gemma-b"):
        (models / f"{name}.gguf").symlink_to(gemma_path)
    return models


def _config() -> ModelyardConfig:
    return parse_config(
        """
model_system:
  hot_swap: {memory_budget_mb: 500}
  backends:
    local:
      max_loaded: 2
      model_profiles: {gemma-a: {latency_p50_ms: 123}}
"""
    )


def _long_generation() -> backend_pb2.InferRequest:
    request = backend_pb2.InferRequest(model_id=A)
    request.input.text = "Count from one to five hundred, in words, separated by commas: one, two,"
    request.params.max_tokens = 120
    request.params.temperature = 0.0
    return request


async def test_a_budget_that_holds_one_model_refuses_keep_loaded_or_drains_first(
    make_stack: StackFactory, two_models: Path
) -> None:
    stack = await make_stack(
        roles=("registry", "backend-local"), models_dir=two_models, config=_config()
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        backend = backend_pb2_grpc.BackendServiceStub(channel)
        registry = registry_pb2_grpc.RegistryServiceStub(channel)

        loaded = await backend.Load(backend_pb2.LoadRequest(model_id=A), timeout=120)
        assert loaded.loaded and loaded.load_ms > 0
        entry = await registry.GetModel(registry_pb2.GetModelRequest(id=A))
        assert entry.performance.cold_start_ms > 0
        assert entry.performance.latency_ms_p50 == 123  # the profile's figure is kept

        # Keeping A loaded: refused before anything is unloaded, naming the sizes.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await backend.Load(backend_pb2.LoadRequest(model_id=B, keep_loaded=[A]), timeout=60)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        err = error_from_rpc(refused.value)
        assert isinstance(err, MemoryBudgetExceeded)
        assert (list(err.sizes_mb), err.budget_mb) == ([B, A], 500)
        assert err.sizes_mb[A] == err.sizes_mb[B] > 300
        assert err.message.startswith(f"{B} ({err.sizes_mb[B]} MiB) cannot load beside {A}")
        health = await backend.Health(backend_pb2.BackendHealthRequest())
        assert list(health.loaded_models) == [A]

        # Not keeping A: B's load waits for A's generation to end, which finishes.
        async def load_b() -> backend_pb2.LoadResponse:
            return await backend.Load(backend_pb2.LoadRequest(model_id=B), timeout=300)

        chunks: list[backend_pb2.InferChunk] = []
        swap: asyncio.Task[backend_pb2.LoadResponse] | None = None
        async for chunk in backend.InferStream(_long_generation(), timeout=300):
            chunks.append(chunk)
            if swap is None:  # the generation runs: ask for B
                swap = asyncio.create_task(load_b())
            assert not swap.done()  # A is unloaded only after its last chunk
        assert swap is not None and len(chunks) > 10
        done = await swap
        assert done.loaded
        last = chunks[-1]
        assert last.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED  # not cut short
        assert last.usage.output_tokens > 10
        health = await backend.Health(backend_pb2.BackendHealthRequest())
        assert list(health.loaded_models) == [B]
        entry_b = await registry.GetModel(registry_pb2.GetModelRequest(id=B))
        assert entry_b.performance.cold_start_ms > 0
