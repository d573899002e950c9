"""The cohere engine's embeddings against the fake Cohere API (``POST /v2/embed``): the wire,
the batches of 96, dimensions checked before the call, failures mapped, and a stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from backends.cohere.calls import KEY
from conftest import StackFactory
from support.fake_cohere import FakeCohere, embed_vector

from modelyard.backends.cohere.engine import CohereEngine
from modelyard.backends.openai_compat.providers import ProviderEndpoint
from modelyard.config import parse_config
from modelyard_client.errors import (
    BackendUnavailable,
    InvalidRequest,
    ModelNotFound,
    ModelyardError,
    ProviderAuthFailed,
    RateLimited,
    error_from_rpc,
)
from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

EMBED = "cohere/embed-v4.0"
STACK_KEY = "co-embeddings-stack-key"


@pytest.fixture
async def embedder(cohere: FakeCohere) -> AsyncIterator[CohereEngine]:
    started = CohereEngine(
        ProviderEndpoint(
            "cohere", cohere.url, api_key=KEY, models=("command-a-03-2025", "embed-v4.0")
        )
    )
    await started.start()
    yield started
    await started.close()


async def test_texts_are_sent_as_search_documents_and_the_vectors_come_back_in_order(
    cohere: FakeCohere, embedder: CohereEngine
) -> None:
    texts = ["Rivers of Europe", "the Danube flows east", "x"]
    vectors, tokens = await embedder.embed(EMBED, texts, 0)
    assert vectors == [embed_vector(t) for t in texts]
    assert tokens == 3 + 4 + 1  # meta.billed_units.input_tokens
    [body] = cohere.embed_bodies
    assert body == {
        "model": "embed-v4.0",
        "input_type": "search_document",
        "texts": texts,
        "embedding_types": ["float"],
    }


async def test_more_than_96_texts_go_in_calls_of_96_in_order(
    cohere: FakeCohere, embedder: CohereEngine
) -> None:
    texts = [f"text number {i}" for i in range(200)]
    vectors, tokens = await embedder.embed(EMBED, texts, 256)
    assert [len(b["texts"]) for b in cohere.embed_bodies] == [96, 96, 8]
    assert {b["output_dimension"] for b in cohere.embed_bodies} == {256}
    assert vectors == [embed_vector(t, 256) for t in texts]
    assert tokens == 3 * 200


@pytest.mark.parametrize(
    ("model", "dimensions", "message"),
    [
        (
            EMBED,
            300,
            "dimensions 300: Cohere's output_dimension is one of 256, 512, 1024, 1536 "
            "('embed-v4.0')",
        ),
        (
            "cohere/embed-english-v3.0",
            512,
            "dimensions: Cohere's 'embed-english-v3.0' has no output_dimension "
            "(embed-v4.0 and newer have)",
        ),
    ],
)
async def test_dimensions_cohere_cannot_honour_are_refused_before_the_call(
    cohere: FakeCohere, model: str, dimensions: int, message: str
) -> None:
    engine = CohereEngine(
        ProviderEndpoint("cohere", cohere.url, api_key=KEY, models=(model.partition("/")[2],))
    )
    await engine.start()
    try:
        with pytest.raises(InvalidRequest) as refused:
            await engine.embed(model, ["a"], dimensions)
    finally:
        await engine.close()
    assert (refused.value.field, refused.value.message) == ("dimensions", message)
    assert cohere.embed_bodies == []


async def _failure(engine: CohereEngine, model: str = EMBED) -> ModelyardError:
    with pytest.raises(ModelyardError) as failed:
        await engine.embed(model, ["a text"], 0)
    return failed.value


FAILURES = {
    "429": (
        429,
        {"message": "You are past the per minute request limit, please wait and try again."},
        {"Retry-After": "3"},
        RateLimited,
    ),
    "401": (401, {"message": "invalid api token"}, {}, ProviderAuthFailed),
    "400": (400, {"message": "invalid request: texts must not be empty."}, {}, InvalidRequest),
    "503": (503, {"message": "service unavailable"}, {}, BackendUnavailable),
}


@pytest.mark.parametrize(
    ("status", "body", "headers", "raised"), FAILURES.values(), ids=FAILURES.keys()
)
async def test_coheres_failures_are_mapped_as_for_chat(
    cohere: FakeCohere,
    embedder: CohereEngine,
    status: int,
    body: dict[str, object],
    headers: dict[str, str],
    raised: type[ModelyardError],
) -> None:
    cohere.fail_embed(status, body, headers)
    err = await _failure(embedder)
    assert type(err) is raised
    assert str(body["message"]) in err.message
    if isinstance(err, RateLimited):
        assert err.retry_after_s == 3.0


async def test_an_embed_model_cohere_does_not_know_is_not_found(
    cohere: FakeCohere, embedder: CohereEngine
) -> None:
    cohere.embed_models.remove("embed-v4.0")
    assert isinstance(await _failure(embedder), ModelNotFound)


async def test_the_catalog_entry_of_an_embed_model_says_it_embeds(embedder: CohereEngine) -> None:
    entries = {e.id: e for e in embedder.models()}
    assert list(entries[EMBED].capabilities) == [common_pb2.CAPABILITY_EMBEDDING]
    assert common_pb2.CAPABILITY_CHAT in entries["cohere/command-a-03-2025"].capabilities


async def test_through_the_gateway_the_embed_model_answers(
    cohere: FakeCohere, make_stack: StackFactory
) -> None:
    config = parse_config(
        f"""
model_system:
  backends:
    cohere:
      api_key: "${{COHERE_API_KEY}}"
      base_url: "{cohere.url}"
      models: [command-a-03-2025, embed-v4.0]
""",
        # A key of this test's own: a configured key is scrubbed from every later error
        # in the process, which would change what test_cohere_failures sees of `KEY`.
        env={"COHERE_API_KEY": STACK_KEY},
    )
    cohere.api_keys.add(STACK_KEY)
    stack = await make_stack(roles=("registry", "gateway", "backend-openai-compat"), config=config)
    async with grpc.aio.insecure_channel(stack.address) as channel:
        gateway = gateway_pb2_grpc.GatewayServiceStub(channel)
        response = await gateway.Embed(
            gateway_pb2.EmbedRequest(model=EMBED, inputs=["one two", "three"]), timeout=10
        )
        assert [list(e.values) for e in response.embeddings] == [
            pytest.approx(embed_vector("one two")),
            pytest.approx(embed_vector("three")),
        ]
        assert response.usage.input_tokens == 3
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gateway.Embed(
                gateway_pb2.EmbedRequest(model=EMBED, inputs=["x"], dimensions=100), timeout=10
            )
    err = error_from_rpc(refused.value)
    assert isinstance(err, InvalidRequest) and err.field == "dimensions"
    assert len(cohere.embed_bodies) == 1
