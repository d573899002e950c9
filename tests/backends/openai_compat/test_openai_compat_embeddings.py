"""Embeddings on the OpenAI wire: the engine against the fake embeddings upstream (the wire,
its answers checked, its failures mapped), through a real stack (catalog, retries), and a
real llama.cpp server (`llama_cpp.server --embedding true`) serving Gemma 3 270M pooled."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from backends.openai_compat.embeddings_fake import FakeEmbeddings, openai_error, vector_of
from conftest import StackFactory, free_port

from modelyard.assembly import Stack
from modelyard.backends.openai_compat.engine import OpenAICompatEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.config import parse_config
from modelyard_client.errors import (
    BackendUnavailable,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    ProviderAuthFailed,
    ProviderProtocolError,
    RateLimited,
    error_from_rpc,
)
from modelyard_client.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

EMBED = "custom/text-embedding-3-small"


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddings]:
    upstream = FakeEmbeddings()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
async def engine(fake: FakeEmbeddings) -> AsyncIterator[OpenAICompatEngine]:
    started = OpenAICompatEngine(ProviderEndpoint("custom", f"{fake.url}/v1", api_key="sk-test"))
    await started.start()
    yield started
    await started.close()


# ---- the engine and the wire ------------------------------------------------------


async def test_the_request_is_openais_and_the_vectors_come_back_in_input_order(
    fake: FakeEmbeddings, engine: OpenAICompatEngine
) -> None:
    fake.shuffled = True  # the items' `index`, not their order, says which input
    texts = ["the first text", "second", "and the third one"]
    vectors, tokens = await engine.embed(EMBED, texts, 0)
    assert vectors == [vector_of(t) for t in texts]
    assert tokens == 3 + 1 + 4  # usage.prompt_tokens
    [body] = fake.bodies
    assert body == {"model": "text-embedding-3-small", "input": texts, "encoding_format": "float"}
    assert fake.headers[0]["Authorization"] == "Bearer sk-test"


async def test_dimensions_are_sent_and_honoured(
    fake: FakeEmbeddings, engine: OpenAICompatEngine
) -> None:
    vectors, _ = await engine.embed(EMBED, ["short"], 4)
    assert fake.bodies[0]["dimensions"] == 4
    assert vectors == [vector_of("short", 4)]


async def test_the_catalog_marks_embedding_models_by_name(engine: OpenAICompatEngine) -> None:
    entries = {e.id: e for e in engine.models()}
    assert list(entries[EMBED].capabilities) == [common_pb2.CAPABILITY_EMBEDDING]
    assert list(entries[EMBED].output_modalities) == [common_pb2.MODALITY_TENSOR]
    assert common_pb2.CAPABILITY_CHAT in entries["custom/gpt-4o-mini"].capabilities


async def _failure(
    engine: OpenAICompatEngine, model: str = EMBED, dimensions: int = 0
) -> ModelyardError:
    with pytest.raises(ModelyardError) as failed:
        await engine.embed(model, ["some text"], dimensions)
    return failed.value


async def test_a_model_that_takes_no_dimensions_is_refused_as_openai_says(
    fake: FakeEmbeddings, engine: OpenAICompatEngine
) -> None:
    fake.models.append("text-embedding-ada-002")
    err = await _failure(engine, "custom/text-embedding-ada-002", dimensions=64)
    assert isinstance(err, InvalidRequest)
    assert err.message == (
        "upstream 'custom' rejected the request: This model does not support specifying dimensions."
    )


FAILURES = {
    "429": (
        429,
        openai_error(
            "Rate limit reached for text-embedding-3-small", "requests", "rate_limit_exceeded"
        ),
        {"Retry-After": "7"},
        RateLimited,
    ),
    "401": (
        401,
        openai_error("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
        {},
        ProviderAuthFailed,
    ),
    "500": (500, openai_error("The server had an error", "server_error"), {}, BackendUnavailable),
}


@pytest.mark.parametrize(
    ("status", "body", "headers", "raised"), FAILURES.values(), ids=FAILURES.keys()
)
async def test_the_upstreams_failures_are_mapped_as_for_chat(
    fake: FakeEmbeddings,
    engine: OpenAICompatEngine,
    status: int,
    body: dict[str, object],
    headers: dict[str, str],
    raised: type[ModelyardError],
) -> None:
    fake.fail(status, body, headers)
    err = await _failure(engine)
    assert type(err) is raised
    if isinstance(err, RateLimited):
        assert err.retry_after_s == 7.0


async def test_an_unknown_model_is_not_found(engine: OpenAICompatEngine) -> None:
    err = await _failure(engine, "custom/text-embedding-9")
    assert isinstance(err, ModelNotFound)


async def test_per_token_vectors_of_a_model_without_pooling_are_refused(
    fake: FakeEmbeddings, engine: OpenAICompatEngine
) -> None:
    fake.per_token = True
    err = await _failure(engine)
    assert isinstance(err, ProviderProtocolError)
    assert "one vector per token of input 0 (2 of them), not one per input" in err.message


async def test_an_upstream_that_is_gone_is_unavailable(
    fake: FakeEmbeddings, engine: OpenAICompatEngine
) -> None:
    await fake.stop()
    err = await _failure(engine)
    assert isinstance(err, BackendUnavailable)


# ---- through a stack ---------------------------------------------------------------


async def _stack(make_stack: StackFactory, url: str, max_retries: int = 0) -> Stack:
    config = parse_config(
        f"""
model_system:
  backends:
    custom: {{kind: openai_compat, endpoint: "{url}", max_retries: {max_retries}}}
"""
    )
    return await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)


async def _embed(stack: Stack, request: gateway_pb2.EmbedRequest) -> gateway_pb2.EmbedResponse:
    async with grpc.aio.insecure_channel(stack.address) as channel:
        response: gateway_pb2.EmbedResponse = await gateway_pb2_grpc.GatewayServiceStub(
            channel
        ).Embed(request, timeout=20)
        return response


async def test_through_the_gateway_a_429_is_retried_after_its_retry_after(
    fake: FakeEmbeddings, make_stack: StackFactory
) -> None:
    stack = await _stack(make_stack, fake.url, max_retries=1)
    fake.fail(
        429,
        openai_error("Rate limit reached", "requests", "rate_limit_exceeded"),
        {"Retry-After": "0.2"},
    )
    started = time.monotonic()
    response = await _embed(stack, gateway_pb2.EmbedRequest(model=EMBED, inputs=["a b", "c"]))
    assert time.monotonic() - started >= 0.2
    assert [list(e.values) for e in response.embeddings] == [
        pytest.approx(vector_of("a b")),
        pytest.approx(vector_of("c")),
    ]
    assert response.usage.input_tokens == 3
    assert len(fake.bodies) == 2


async def test_through_the_gateway_a_chat_model_is_refused_and_a_5xx_named(
    fake: FakeEmbeddings, make_stack: StackFactory
) -> None:
    stack = await _stack(make_stack, fake.url)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        listed = await registry_pb2_grpc.RegistryServiceStub(channel).ListModels(
            registry_pb2.ListModelsRequest(provider="custom")
        )
    assert {m.id for m in listed.models if common_pb2.CAPABILITY_EMBEDDING in m.capabilities} == {
        EMBED
    }
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _embed(stack, gateway_pb2.EmbedRequest(model="custom/gpt-4o-mini", inputs=["x"]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fake.bodies == []
    fake.fail(503, openai_error("The engine is currently overloaded", "server_error"))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _embed(stack, gateway_pb2.EmbedRequest(model=EMBED, inputs=["x"]))
    err = error_from_rpc(failed.value)
    assert isinstance(err, BackendUnavailable)
    assert "The engine is currently overloaded" in err.message


# ---- a real llama.cpp server --------------------------------------------------------


@pytest.fixture(scope="module")
def pooled_llama_server(
    gemma_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``llama_cpp.server --embedding true`` serving Gemma 3 270M with mean pooling (its GGUF
    has none: ``gemma3.pooling_type`` overridden to 1, MEAN), as ``gemma-3-270m-embed``."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-embed") / "stderr.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(gemma_path),
                "--model_alias", "gemma-3-270m-embed",
                "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", "512",
                "--embedding", "true",
                "--kv_overrides", "gemma3.pooling_type=int:1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"llama_cpp.server exited early: {log_path.read_text()[-2000:]}"
                    )
                try:
                    with urllib.request.urlopen(f"{url}/v1/models", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not answer within 120s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.mark.slow
async def test_a_real_llama_cpp_server_embeds_through_the_gateway(
    pooled_llama_server: str, make_stack: StackFactory
) -> None:
    stack = await _stack(make_stack, pooled_llama_server)
    texts = [
        "The cat sat on the mat.",
        "A cat was sitting on a mat.",
        "Quarterly revenue rose by four percent.",
        "The cat sat on the mat.",
    ]
    response = await _embed(
        stack, gateway_pb2.EmbedRequest(model="custom/gemma-3-270m-embed", inputs=texts)
    )
    assert response.model_id == "custom/gemma-3-270m-embed"
    vectors = [list(e.values) for e in response.embeddings]
    assert [len(v) for v in vectors] == [640] * 4  # Gemma 3 270M's embedding length
    # The same text, the same direction, in its place (llama.cpp's batched decode differs
    # in the last digits: measured 0.99995); a paraphrase nearer than another topic
    # (measured 0.93 against 0.62).
    assert _cosine(vectors[0], vectors[3]) > 0.999
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.1
    assert response.usage.input_tokens > len(texts)  # llama.cpp's own count

    # The server ignores `dimensions`: refused naming it, never passed on as honoured.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _embed(
            stack,
            gateway_pb2.EmbedRequest(
                model="custom/gemma-3-270m-embed", inputs=["x"], dimensions=64
            ),
        )
    err = error_from_rpc(refused.value)
    assert isinstance(err, InvalidRequest)
    assert err.field == "dimensions"
    assert "640-value vectors for dimensions 64" in err.message
