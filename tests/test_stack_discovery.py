"""The stack runs discovery from its configuration: models appear and disappear."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import gguf
import grpc
import numpy as np
from conftest import StackFactory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelyard.config import parse_config
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc


def _tiny_gguf(path: Path) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(path.stem)
    w.add_context_length(4096)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_tensor("token_embd.weight", np.zeros((8, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


Models = dict[str, common_pb2.ModelEntry]


async def _wait_for(
    stub: registry_pb2_grpc.RegistryServiceAsyncStub,
    predicate: Callable[[Models], bool],
    timeout_s: float = 20.0,
) -> Models:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        listed = await stub.ListModels(registry_pb2.ListModelsRequest(include_unavailable=True))
        models = {m.id: m for m in listed.models}
        if predicate(models):
            return models
        assert asyncio.get_running_loop().time() < deadline, f"not reached; have {models}"
        await asyncio.sleep(0.2)


async def test_gguf_added_appears_and_removed_becomes_unavailable(
    make_stack: StackFactory,
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    _tiny_gguf(models / "first.gguf")
    config = parse_config(
        f"model_system:\n  registry: {{discovery_interval: 1s}}\n"
        f"  backends:\n    local: {{models_dir: '{models}', assemble_default_model: false}}\n",
        env={},
    )
    stack = await make_stack(roles=("registry",), config=config, discovery=True)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        found = await _wait_for(stub, lambda m: "local/first" in m)
        assert found["local/first"].metadata["source"] == f"gguf:{models}"
        assert found["local/first"].context_window == 4096

        _tiny_gguf(models / "second.gguf")
        (models / "first.gguf").unlink()
        after = await _wait_for(
            stub,
            lambda m: (
                "local/second" in m
                and m["local/first"].health == common_pb2.HEALTH_STATUS_UNAVAILABLE
            ),
        )
        assert after["local/first"].health_reason == f"no longer found by gguf:{models}"

        reply = await stub.Discover(registry_pb2.DiscoverRequest())
        assert (reply.added, reply.removed) == (0, 0)  # nothing changed since the last pass


async def test_coreml_backend_off_macos_is_not_serving_with_the_reason(
    make_stack: StackFactory,
    tmp_path: Path,
) -> None:
    config = parse_config(
        f"model_system:\n  backends:\n    coreml: {{models_dir: '{tmp_path}'}}\n", env={}
    )
    stack = await make_stack(roles=("registry", "backend-coreml"), config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service="modelyard.v1.BackendService")
        )

    expected = (
        health_pb2.HealthCheckResponse.SERVING
        if sys.platform == "darwin"
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    assert reply.status == expected


async def test_ollama_models_fill_the_catalog_and_leave_it_unavailable(
    make_stack: StackFactory,
) -> None:
    from support.fake_ollama import FakeOllama

    fake = FakeOllama()
    await fake.start()
    try:
        config = parse_config(
            f"model_system:\n  backends:\n    ollama: {{endpoint: '{fake.url}'}}\n", env={}
        )
        stack = await make_stack(
            roles=("registry",), config=config, discovery=True, discover_ollama=True
        )
        async with grpc.aio.insecure_channel(stack.address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            names = {f"ollama/{m.name}" for m in fake.models}
            found = await _wait_for(stub, lambda m: names <= set(m))
            assert all(found[n].metadata["source"] == "ollama" for n in names)
            gone = fake.models.pop()
            reply = await stub.Discover(registry_pb2.DiscoverRequest(provider="ollama"))
            assert reply.removed == 1
            model = await stub.GetModel(registry_pb2.GetModelRequest(id=f"ollama/{gone.name}"))
            assert model.health == common_pb2.HEALTH_STATUS_UNAVAILABLE
    finally:
        await fake.stop()


async def test_coreml_models_fill_the_catalog_with_their_schema(
    make_stack: StackFactory,
    tmp_path: Path,
) -> None:
    from discovery.coreml_models import image_classifier

    image_classifier(tmp_path / "Pets.mlmodel")
    config = parse_config(
        f"model_system:\n  backends:\n    coreml: {{models_dir: '{tmp_path}'}}\n", env={}
    )
    stack = await make_stack(roles=("registry", "backend-coreml"), config=config, discovery=True)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        found = await _wait_for(stub, lambda m: any(i.startswith("coreml/") for i in m))
    [entry] = [e for i, e in found.items() if i.startswith("coreml/")]
    assert common_pb2.CAPABILITY_IMAGE_CLASSIFICATION in entry.capabilities
    assert "image" in entry.input_schema_json
    if sys.platform != "darwin":
        assert entry.health == common_pb2.HEALTH_STATUS_UNAVAILABLE
        assert "macOS" in entry.health_reason
