"""An `ollama` backend in a real in-process stack: the gateway's calls reach /api/chat, and
the backend service's Load and Unload reach keep_alive."""

from __future__ import annotations

import grpc
from backends.ollama.calls import MODEL
from conftest import StackFactory
from support.fake_ollama import FakeOllama, Reply

from modelyard.backends.ollama.engine import OllamaEngine
from modelyard.config import parse_config
from modelyard_client.v1 import (
    backend_pb2,
    backend_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
)


async def test_the_gateway_streams_and_answers_through_the_native_engine(
    daemon: FakeOllama, make_stack: StackFactory
) -> None:
    config = parse_config(
        "model_system:\n  backends:\n"
        f"    ollama: {{endpoint: '{daemon.url}', keep_alive: 10m, max_concurrency: 3}}\n",
        env={},
    )
    stack = await make_stack(
        roles=("registry", "gateway", "backend-openai-compat"),
        config=config,
        discover_ollama=True,  # the daemon is probed at start: it answers
    )
    assert stack.host is not None
    [engine] = stack.host.engines
    assert isinstance(engine, OllamaEngine)
    assert engine.admission.max_concurrency == 3
    daemon.reply(
        Reply(texts=["The ", "Nile"], prompt_eval_count=9, eval_count=2),
        Reply(texts=["Amazon"], prompt_eval_count=9, eval_count=1),
    )
    request = gateway_pb2.GenerateRequest(model=MODEL)
    request.input.text = "Name a river."
    request.params.max_tokens = 16
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        chunks = [c async for c in gateway.GenerateStream(request, timeout=10)]
        answer = await gateway.Generate(request, timeout=10)

    assert "".join(c.text for c in chunks) == "The Nile"
    assert chunks[0].model_id == MODEL
    assert chunks[-1].finish_reason == common_pb2.FINISH_REASON_STOP
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (9, 2)
    assert (answer.model_id, answer.text) == (MODEL, "Amazon")
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (9, 1)
    bodies = daemon.completions()  # text input: /api/generate
    assert [b["model"] for b in bodies] == ["gemma3:270m", "gemma3:270m"]
    assert bodies[0]["options"]["num_predict"] == 16
    assert bodies[0]["keep_alive"] == 600.0  # keep_alive: 10m


async def test_the_backend_services_load_and_unload_keep_the_model_by_keep_alive(
    daemon: FakeOllama, make_stack: StackFactory
) -> None:
    config = parse_config(
        f"model_system:\n  backends:\n    ollama: {{endpoint: '{daemon.url}', keep_alive: 2m}}\n",
        env={},
    )
    stack = await make_stack(
        roles=("registry", "backend-openai-compat"), config=config, discover_ollama=True
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        backend = backend_pb2_grpc.BackendServiceStub(channel)
        loaded = await backend.Load(backend_pb2.LoadRequest(model_id=MODEL), timeout=10)
        health = await backend.Health(backend_pb2.BackendHealthRequest(), timeout=10)
        assert daemon.chats()[-1]["keep_alive"] == 120.0
        assert daemon.loaded == ["gemma3:270m"]
        unloaded = await backend.Unload(backend_pb2.UnloadRequest(model_id=MODEL), timeout=10)
        again = await backend.Unload(backend_pb2.UnloadRequest(model_id=MODEL), timeout=10)
        after = await backend.Health(backend_pb2.BackendHealthRequest(), timeout=10)

    assert (loaded.model_id, loaded.loaded) == (MODEL, True)
    assert loaded.load_ms > 0
    assert list(health.loaded_models) == [MODEL]
    assert daemon.chats()[-1]["keep_alive"] == 0
    assert (unloaded.was_loaded, again.was_loaded) == (True, False)
    assert daemon.loaded == []
    assert list(after.loaded_models) == []
