"""The native Ollama engine's embeddings against the fake daemon (``POST /api/embed``): the
wire, the catalog's embedding model, failures mapped, and the gateway through a stack."""

from __future__ import annotations

import grpc
import pytest
from backends.ollama.conftest import EngineFor
from conftest import StackFactory
from support.fake_ollama import FakeOllama, Reply, embed_vector

from modelyard.backends.ollama.engine import OllamaEngine
from modelyard.config import parse_config
from modelyard_client.errors import BackendUnavailable, ModelNotFound, ModelyardError, RateLimited
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

NOMIC = "ollama/nomic-embed-text:latest"


async def test_inputs_go_as_one_list_and_the_vectors_come_back_in_order(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    texts = ["why is the sky blue", "why is the grass green", "x"]
    vectors, tokens = await engine.embed(NOMIC, texts, 0)
    assert vectors == [embed_vector(t) for t in texts]
    assert tokens == 5 + 5 + 1  # prompt_eval_count
    [sent] = [r for r in daemon.received if r.path == "/api/embed"]
    assert sent.body["model"] == "nomic-embed-text:latest"
    assert sent.body["input"] == texts
    assert sent.body["keep_alive"] == 300.0
    assert "dimensions" not in sent.body
    assert NOMIC in engine.loaded_models()  # kept for keep_alive after the call


async def test_dimensions_are_sent(daemon: FakeOllama, engine: OllamaEngine) -> None:
    vectors, _ = await engine.embed(NOMIC, ["short"], 64)
    assert [len(v) for v in vectors] == [64]
    assert daemon.received[-1].body["dimensions"] == 64


async def test_the_catalog_entry_says_the_model_embeds(engine: OllamaEngine) -> None:
    entries = {e.id: e for e in engine.models()}
    assert common_pb2.CAPABILITY_EMBEDDING in entries[NOMIC].capabilities


async def _failure(engine: OllamaEngine, model: str = NOMIC) -> ModelyardError:
    with pytest.raises(ModelyardError) as failed:
        await engine.embed(model, ["a text"], 0)
    return failed.value


async def test_a_model_not_pulled_is_not_found(engine: OllamaEngine) -> None:
    assert isinstance(await _failure(engine, "ollama/mxbai-embed-large:latest"), ModelNotFound)


async def test_a_429_keeps_its_retry_after_and_a_500_is_unavailable(
    daemon: FakeOllama, engine: OllamaEngine
) -> None:
    daemon.embed_replies.append(
        Reply(status=429, error="too many requests", headers={"Retry-After": "4"})
    )
    limited = await _failure(engine)
    assert isinstance(limited, RateLimited)
    assert limited.retry_after_s == 4.0
    daemon.embed_replies.append(Reply(status=500, error="llama runner process has terminated"))
    failed = await _failure(engine)
    assert isinstance(failed, BackendUnavailable)
    assert "llama runner process has terminated" in failed.message


async def test_a_daemon_that_is_down_is_unavailable(
    daemon: FakeOllama, engine_for: EngineFor
) -> None:
    engine = await engine_for()
    await daemon.stop()
    assert isinstance(await _failure(engine), BackendUnavailable)


async def test_through_the_gateway_the_embedding_model_answers(
    daemon: FakeOllama, make_stack: StackFactory
) -> None:
    config = parse_config(
        f"model_system:\n  backends:\n    ollama: {{endpoint: '{daemon.url}'}}\n", env={}
    )
    stack = await make_stack(
        roles=("registry", "gateway", "backend-openai-compat"), config=config, discover_ollama=True
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        response = await gateway.Embed(
            gateway_pb2.EmbedRequest(model=NOMIC, inputs=["one two", "three"]), timeout=10
        )
        assert response.model_id == NOMIC
        assert [list(e.values) for e in response.embeddings] == [
            pytest.approx(embed_vector("one two")),
            pytest.approx(embed_vector("three")),
        ]
        assert response.usage.input_tokens == 3
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # a chat model: no embeddings
            await gateway.Embed(
                gateway_pb2.EmbedRequest(model="ollama/gemma3:270m", inputs=["x"]), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len([r for r in daemon.received if r.path == "/api/embed"]) == 1
