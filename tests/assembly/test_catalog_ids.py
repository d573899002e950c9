"""One catalog-id rule, ``<backend name>/<provider model name>``, for engines and discovery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import gguf
import grpc
import numpy as np
from conftest import StackFactory
from discovery.coreml_models import image_classifier
from support.fake_ollama import FakeOllama

from modelyard.assembly import Settings, Stack
from modelyard.assembly.plan import discovery_for, plan_backends
from modelyard.config import parse_config
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc


def _tiny_gguf(path: Path) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(path.stem)
    w.add_context_length(4096)
    w.add_tensor("token_embd.weight", np.zeros((8, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


async def _catalog(
    stack: Stack, predicate: Callable[[dict[str, common_pb2.ModelEntry]], bool]
) -> dict[str, common_pb2.ModelEntry]:
    """The registry's entries once `predicate` holds (discovery runs in the background)."""
    async with grpc.aio.insecure_channel(stack.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for _ in range(200):
            reply = await stub.ListModels(registry_pb2.ListModelsRequest(include_unavailable=True))
            models = {m.id: m for m in reply.models}
            if predicate(models):
                return models
            await asyncio.sleep(0.1)
    raise AssertionError(f"catalog never matched; have {sorted(models)}")


async def test_a_renamed_local_backend_names_its_models_in_engine_and_discovery(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    _tiny_gguf(tmp_path / "tiny.gguf")
    config = parse_config(
        f"model_system:\n  backends:\n    cpu:\n      kind: local\n      models_dir: '{tmp_path}'\n"
        "      assemble_default_model: false\n",
        env={},
    )
    stack = await make_stack(roles=("registry", "backend-local"), config=config, discovery=True)
    models = await _catalog(stack, lambda m: "cpu/tiny" in m and "source" in m["cpu/tiny"].metadata)
    assert sorted(models) == ["cpu/tiny"]  # one entry: discovery's and the engine's agree
    entry = models["cpu/tiny"]
    assert entry.provider == "cpu"
    assert entry.metadata["source"] == f"gguf:{tmp_path}"  # described by discovery...
    assert [d.endpoint for d in entry.deployments] == [stack.address]  # ...served by the engine


async def test_an_ollama_backend_with_its_own_name_is_served_by_its_own_engine(
    make_stack: StackFactory,
) -> None:
    fake = FakeOllama()
    await fake.start()
    try:
        config = parse_config(
            "model_system:\n  backends:\n"
            f"    ollama-gpu: {{kind: ollama, endpoint: '{fake.url}'}}\n",
            env={},
        )
        stack = await make_stack(
            roles=("registry", "backend-openai-compat"),
            config=config,
            discovery=True,
            discover_ollama=True,
        )
        names = {f"ollama-gpu/{m.name}" for m in fake.models}
        # The engine announces them at start; discovery's pass then describes them too.
        models = await _catalog(
            stack, lambda m: names <= set(m) and all("source" in m[n].metadata for n in names)
        )
    finally:
        await fake.stop()
    assert set(models) == names  # nothing under "ollama/"
    assert stack.host is not None
    for model_id in names:
        assert models[model_id].metadata["source"] == "ollama-gpu"
        assert stack.host.engine_for(model_id).backend == "ollama-gpu"  # its engine takes it
        assert [d.endpoint for d in models[model_id].deployments] == [stack.address]


async def test_two_hosted_backends_of_one_kind_keep_their_models_apart() -> None:
    config = parse_config(
        "model_system:\n  backends:\n"
        "    openai: {api_key: '${OPENAI_API_KEY}'}\n"
        "    openai-eu: {kind: openai, api_key: '${OPENAI_EU_KEY}',"
        " base_url: 'https://eu.example.com/v1'}\n",
        env={"OPENAI_API_KEY": "sk-us", "OPENAI_EU_KEY": "sk-eu"},
    )
    plans = await plan_backends(Settings(config=config, discover_ollama=False))
    [api] = [b.source for b in discovery_for(plans, [], "") if b.source.name == "api"]
    snapshot = await api.discover()
    us = {e.name for e in snapshot.entries if e.id.startswith("openai/")}
    eu = {e.name for e in snapshot.entries if e.id.startswith("openai-eu/")}
    assert us and us == eu  # the same price list, under each backend's own name
    assert {e.provider for e in snapshot.entries} == {"openai", "openai-eu"}
    assert len(snapshot.entries) == 2 * len(us)


async def test_coreml_engine_and_discovery_read_the_same_directory(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    """No `models_dir` of its own: both use --models-dir, which wins over the file's."""
    shared = tmp_path / "models"
    shared.mkdir()
    image_classifier(shared / "Pets.mlmodel")
    config = parse_config(
        f"model_system:\n  server: {{models_dir: '{tmp_path / 'empty'}'}}\n"
        "  backends:\n    coreml: {}\n",
        env={},
    )
    stack = await make_stack(
        roles=("registry", "backend-coreml"), config=config, models_dir=shared, discovery=True
    )
    models = await _catalog(
        stack,
        lambda m: (
            "coreml/pets" in m
            and bool(m["coreml/pets"].deployments)
            and bool(m["coreml/pets"].metadata.get("source"))
        ),  # announced, and discovered
    )
    entry = models["coreml/pets"]
    assert entry.metadata["source"] == f"coreml:{shared}"
    assert [d.endpoint for d in entry.deployments] == [stack.address]
    [plan] = stack.plans
    assert plan.models_dir == shared


async def test_a_backends_own_models_dir_wins_over_the_servers() -> None:
    config = parse_config(
        "model_system:\n  server: {models_dir: /srv/models}\n  backends:\n"
        "    coreml: {models_dir: /srv/coreml}\n    local: {}\n",
        env={},
    )
    plans = await plan_backends(Settings(config=config, discover_ollama=False))
    assert {p.name: p.models_dir for p in plans if p.name in ("coreml", "local")} == {
        "coreml": Path("/srv/coreml"),
        "local": Path("/srv/models"),
    }
