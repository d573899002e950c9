"""The Embed RPC through a real stack: vectors one per input in order, usage and cost, the
model resolved and checked as Generate's is, bad input refused before any backend call,
upstream failures mapped, the gRPC path to a backend in another server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from conftest import StackFactory
from meters.test_gateway_metrics import _samples, _scrape, _value
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from support.scripted_engine import ScriptedEngine

from modelyard.assembly import Stack
from modelyard.backends.engine import Embeddings
from modelyard.config import HotSwapConfig, ModelyardConfig, parse_config
from modelyard_client import GatewayClient
from modelyard_client.errors import (
    BackendUnavailable,
    FailedPrecondition,
    InvalidRequest,
    ModelyardError,
    ProviderAuthFailed,
    error_from_rpc,
)
from modelyard_client.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
)

EMBED = "scripted/embed"  # the embedding model
CHAT = "scripted/echo"  # a chat model of the same engine
USD_PER_TOKEN = 0.0001
ADMIN_KEY = "admin-key-for-the-embedding-tests"


def vector_of(text: str, dimensions: int = 0) -> list[float]:
    """The scripted engine's vector of `text`: its length and first code point, padded."""
    values = [float(len(text)), float(ord(text[0])), 0.5, -0.25]
    return (values * (dimensions // 4 + 1))[:dimensions] if dimensions else values


class EmbeddingEngine(ScriptedEngine):
    """The scripted engine with an embedding model beside its chat one, priced; `failures`
    are raised by the next embed calls in turn, before any vector."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__((CHAT, EMBED), **kwargs)
        self.embeds: list[tuple[str, list[str], int]] = []
        self.failures: list[ModelyardError] = []
        self.ignore_dimensions = False  # answer the model's own length whatever was asked
        self.counted_tokens: int | None = None  # None: one per word

    def models(self) -> list[common_pb2.ModelEntry]:
        entries = super().models()
        for entry in entries:
            if entry.id == EMBED:
                del entry.capabilities[:]
                entry.capabilities.append(common_pb2.CAPABILITY_EMBEDDING)
                entry.output_modalities[:] = [common_pb2.MODALITY_TENSOR]
                entry.cost.usd_per_input_token = USD_PER_TOKEN
        return entries

    async def embed(self, model_id: str, inputs: Sequence[str], dimensions: int) -> Embeddings:
        self.embeds.append((model_id, list(inputs), dimensions))
        if self.failures:
            raise self.failures.pop(0)
        asked = 0 if self.ignore_dimensions else dimensions
        tokens = self.counted_tokens
        if tokens is None:
            tokens = sum(len(text.split()) for text in inputs)
        return Embeddings([vector_of(text, asked) for text in inputs], tokens)


class ChatOnlyEngine(ScriptedEngine):
    """An engine whose catalog says its model embeds, but which has no `embed`."""

    kind = "chat-only"

    def models(self) -> list[common_pb2.ModelEntry]:
        entries = super().models()
        for entry in entries:
            entry.capabilities.append(common_pb2.CAPABILITY_EMBEDDING)
        return entries


def _request(*inputs: str, model: str = EMBED, dimensions: int = 0) -> gateway_pb2.EmbedRequest:
    return gateway_pb2.EmbedRequest(
        model=model, inputs=inputs or ("first text", "the second"), dimensions=dimensions
    )


async def _embed(
    address: str, request: gateway_pb2.EmbedRequest, key: str | None = None
) -> gateway_pb2.EmbedResponse:
    metadata = (("x-api-key", key),) if key else ()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        response: gateway_pb2.EmbedResponse = await stub.Embed(
            request, metadata=metadata, timeout=10
        )
        return response


async def _refused(
    address: str, request: gateway_pb2.EmbedRequest, key: str | None = None
) -> ModelyardError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await _embed(address, request, key)
    return error_from_rpc(failed.value)


def _config(extra: str = "") -> ModelyardConfig:
    return parse_config(
        f"model_system:\n{extra}" if extra else "model_system: {}",
        env={"ADMIN": ADMIN_KEY, "SERVICE": "service-key-for-the-embedding-tests"},
    )


@pytest.fixture
async def engine() -> EmbeddingEngine:
    return EmbeddingEngine()


@pytest.fixture
async def stack(make_stack: StackFactory, engine: EmbeddingEngine) -> Stack:
    config = _config("  security:\n    audit: {flush_interval: 50ms}\n")
    return await make_stack(roles=("registry", "gateway"), engines=[engine], config=config)


# ---- answers -----------------------------------------------------------------


async def test_one_vector_per_input_comes_back_in_order_with_usage_and_cost(
    stack: Stack, engine: EmbeddingEngine
) -> None:
    texts = ("a short one", "Zebra crossing at night", "x")
    request = _request(*texts)
    request.request_id = "embed-call-1"
    response = await _embed(stack.address, request)

    assert response.model_id == EMBED
    assert [list(e.values) for e in response.embeddings] == [vector_of(t) for t in texts]
    assert response.usage.input_tokens == 3 + 4 + 1  # the engine's count, one per word
    assert response.usage.output_tokens == 0
    assert response.usage.cost_usd == pytest.approx(8 * USD_PER_TOKEN)
    assert response.request_id == "embed-call-1"
    assert response.latency_ms > 0
    assert engine.embeds == [(EMBED, list(texts), 0)]


async def test_dimensions_reach_the_engine_and_a_request_id_is_made_when_none_is_set(
    stack: Stack, engine: EmbeddingEngine
) -> None:
    response = await _embed(stack.address, _request("one", "two", dimensions=6))
    assert [len(e.values) for e in response.embeddings] == [6, 6]
    assert engine.embeds[0][2] == 6
    assert len(response.request_id) == 32


async def test_without_an_upstream_count_the_estimate_is_priced(
    stack: Stack, engine: EmbeddingEngine
) -> None:
    engine.counted_tokens = 0
    response = await _embed(stack.address, _request("abcdefgh" * 4))  # 34 bytes as an Input
    assert response.usage.input_tokens == 0  # the upstream said nothing: not made up
    assert response.usage.cost_usd == pytest.approx(9 * USD_PER_TOKEN)  # ceil(34 / 4)


async def test_the_call_gets_its_audit_row_with_tokens_and_cost(stack: Stack) -> None:
    await _embed(stack.address, _request("four words right here"))
    async with grpc.aio.insecure_channel(stack.address) as channel:
        reply = await audit_pb2_grpc.AuditServiceStub(channel).QueryAudit(
            audit_pb2.QueryAuditRequest(rpc="Embed"), timeout=10
        )
    (entry,) = reply.entries
    assert entry.rpc == "modelyard.v1.GatewayService/Embed"
    assert (entry.model_requested, entry.model_served) == (EMBED, EMBED)
    assert (entry.tokens_in, entry.tokens_out) == (4, 0)
    assert entry.cost_usd == pytest.approx(4 * USD_PER_TOKEN)
    assert entry.code == "OK"


async def test_the_python_client_embeds_and_raises_the_servers_error_class(
    stack: Stack, engine: EmbeddingEngine
) -> None:
    with GatewayClient(stack.address, timeout_s=10) as client:
        response = await asyncio.to_thread(client.embed, EMBED, ["via", "the client"])
        with pytest.raises(InvalidRequest) as refused:
            await asyncio.to_thread(client.embed, EMBED, ["x"], dimensions=70_000)
    assert [list(e.values) for e in response.embeddings] == [
        vector_of("via"),
        vector_of("the client"),
    ]
    assert refused.value.field == "dimensions"
    assert len(engine.embeds) == 1


# ---- refused before any backend call --------------------------------------------


BAD: dict[str, tuple[gateway_pb2.EmbedRequest, grpc.StatusCode, str, str | None]] = {
    "no-inputs": (
        gateway_pb2.EmbedRequest(model=EMBED),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs is empty: give at least one text to embed",
        "inputs",
    ),
    "too-many-inputs": (
        gateway_pb2.EmbedRequest(model=EMBED, inputs=["x"] * 2049),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs has 2049 entries; the limit is 2048",
        "inputs",
    ),
    "an-empty-input": (
        gateway_pb2.EmbedRequest(model=EMBED, inputs=["fine", ""]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs[1] is empty: every input is a text to embed",
        "inputs[1]",
    ),
    "too-large": (
        gateway_pb2.EmbedRequest(model=EMBED, inputs=["x" * 600_000, "y" * 600_000]),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "inputs are 1200008 bytes together; the limit is 1048576 bytes "
        "(security.input_limits.max_input_bytes)",
        None,
    ),
    "dimensions-too-big": (
        _request(dimensions=65_537),
        grpc.StatusCode.INVALID_ARGUMENT,
        "dimensions 65537 is above the limit of 65,536 (0: the model's own length)",
        "dimensions",
    ),
    "no-model": (
        _request(model=""),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model is empty: name a model with CAPABILITY_EMBEDDING (a catalog id or an alias)",
        "model",
    ),
    "model-too-long": (
        _request(model="m" * 257),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model is 257 characters long; the limit is 256",
        "model",
    ),
    "a-chat-model": (
        _request(model=CHAT),
        grpc.StatusCode.INVALID_ARGUMENT,
        f"model '{CHAT}' does not make embeddings: it lacks CAPABILITY_EMBEDDING; "
        "name an embedding model",
        "model",
    ),
    "an-unknown-model": (
        _request(model="scripted/missing"),
        grpc.StatusCode.NOT_FOUND,
        "model 'scripted/missing' is not in the catalog",
        None,
    ),
}


@pytest.mark.parametrize(("request_", "code", "message", "field"), BAD.values(), ids=BAD.keys())
async def test_bad_input_is_refused_naming_the_problem_before_any_backend_call(
    stack: Stack,
    engine: EmbeddingEngine,
    request_: gateway_pb2.EmbedRequest,
    code: grpc.StatusCode,
    message: str,
    field: str | None,
) -> None:
    err = await _refused(stack.address, request_)
    assert err.code == code
    assert err.message.startswith(message)
    if field is not None:
        assert isinstance(err, InvalidRequest)
        assert err.field == field
    assert engine.embeds == []


async def test_a_model_over_its_token_limit_is_refused_before_the_backend(
    make_stack: StackFactory,
) -> None:
    engine = EmbeddingEngine(limits=common_pb2.RateLimits(tokens_per_minute=100))
    engine.counted_tokens = 60  # what the first call is settled with
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    await _embed(stack.address, _request("x" * 200))  # reserves 51, settles 60
    err = await _refused(stack.address, _request("y" * 200))
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "QUOTA_EXCEEDED"
    assert len(engine.embeds) == 1


async def test_an_engine_that_makes_no_embeddings_is_named(make_stack: StackFactory) -> None:
    engine = ChatOnlyEngine()
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine])
    err = await _refused(stack.address, _request(model=CHAT))
    assert isinstance(err, FailedPrecondition)
    assert err.message == (
        f"the chat-only engine of backend 'scripted' does not make embeddings ('{CHAT}')"
    )
    assert engine.calls == []


# ---- the security stages ----------------------------------------------------------


async def test_the_guardrails_and_anonymization_apply_to_the_inputs(
    make_stack: StackFactory, engine: EmbeddingEngine
) -> None:
    config = _config(
        "  security:\n"
        "    redaction: {enabled: true}\n"
        "    guardrails:\n"
        "      deny_rules: [{name: no_codenames, terms: [Project Falcon]}]\n"
    )
    stack = await make_stack(roles=("registry", "gateway"), engines=[engine], config=config)
    err = await _refused(stack.address, _request("fine", "all about project falcon"))
    assert err.reason == "CONTENT_BLOCKED"
    assert err.message.startswith("inputs[1] matches content filter rule 'no_codenames'")
    err = await _refused(stack.address, _request("a bell \x07 rings"))
    assert isinstance(err, InvalidRequest)
    assert err.field == "inputs[0]"
    assert engine.embeds == []  # neither reached the engine

    await _embed(stack.address, _request("mail ana@example.com", "or ana@example.com, bo@x.org"))
    [(_, sent, _)] = engine.embeds
    assert sent == ["mail [EMAIL_1]", "or [EMAIL_1], [EMAIL_2]"]  # numbered across the call


# ---- which model, for whom ------------------------------------------------------


async def test_an_alias_resolves_to_its_route_and_a_key_limited_to_another_model_is_refused(
    make_stack: StackFactory, engine: EmbeddingEngine
) -> None:
    auth = _config(
        "  security:\n"
        '    auth: {required: true, admin_key: "${ADMIN}", service_key: "${SERVICE}"}\n'
    )
    # Built directly: the file's check wants a route's backend configured, and the
    # scripted engine is the test's, not the file's.
    config = dataclasses.replace(auth, hot_swap=HotSwapConfig(routes={"vectors": EMBED}))
    stack = await make_stack(
        roles=("registry", "hotswap", "gateway"), engines=[engine], config=config
    )
    async with grpc.aio.insecure_channel(stack.address) as channel:
        keys = keys_pb2_grpc.KeyServiceStub(channel)
        admin = (("x-api-key", ADMIN_KEY),)
        chat_only = await keys.CreateKey(
            keys_pb2.CreateKeyRequest(owner="ana", models=[CHAT]), metadata=admin
        )
        vectors = await keys.CreateKey(
            keys_pb2.CreateKeyRequest(owner="bo", models=["vectors"]), metadata=admin
        )

    response = await _embed(stack.address, _request("hi", model="vectors"), vectors.secret)
    assert response.model_id == EMBED
    err = await _refused(stack.address, _request("hi"), chat_only.secret)
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert err.message == f"key '{chat_only.key.id}' may not use model '{EMBED}'"
    assert len(engine.embeds) == 1


# ---- upstream failures ----------------------------------------------------------


async def test_an_upstream_refusal_reaches_the_caller_as_it_came(
    stack: Stack, engine: EmbeddingEngine
) -> None:
    engine.failures = [ProviderAuthFailed("upstream 'scripted' rejected this gateway's key")]
    err = await _refused(stack.address, _request("no"))
    assert isinstance(err, ProviderAuthFailed)
    assert err.message == "upstream 'scripted' rejected this gateway's key"
    assert len(engine.embeds) == 1  # not retried


async def test_a_transient_failure_is_retried_once_and_the_retry_is_counted(
    make_stack: StackFactory, engine: EmbeddingEngine
) -> None:
    # The file's backend of the engine's name gives its retries (no engine is made from it:
    # no backend role is served, and discovery is off).
    retries = (
        "  backends:\n"
        "    scripted: {kind: openai_compat, endpoint: 'http://127.0.0.1:9/v1', max_retries: 1}\n"
    )
    stack = await make_stack(
        roles=("registry", "gateway"),
        engines=[engine],
        config=_config(retries),
        metrics_listen="127.0.0.1:0",
    )
    assert stack.metrics_listener is not None
    await _embed(stack.address, _request("healthy"))
    healthy = _samples(await _scrape(stack.metrics_listener.url))
    assert _value(healthy, "modelyard_retries_total") == 0
    engine.failures = [BackendUnavailable("upstream 'scripted' answered 503")]
    response = await _embed(stack.address, _request("again"))
    assert [list(e.values) for e in response.embeddings] == [vector_of("again")]
    assert len(engine.embeds) == 3  # the healthy call, the failed attempt, its retry
    samples = _samples(await _scrape(stack.metrics_listener.url))
    labels = {"gen_ai_request_model": EMBED, "error_type": "BACKEND_UNAVAILABLE"}
    assert _value(samples, "modelyard_retries_total", **labels) == 1
    assert _value(samples, "modelyard_retries_total") == 1


async def test_dimensions_the_engine_ignores_are_refused_naming_them(
    stack: Stack, engine: EmbeddingEngine
) -> None:
    engine.ignore_dimensions = True
    err = await _refused(stack.address, _request("a", "b", dimensions=8))
    assert isinstance(err, InvalidRequest)
    assert err.field == "dimensions"
    assert "answered 'scripted/embed' with 4-value vectors for dimensions 8" in err.message


# ---- a backend in another server -------------------------------------------------


@pytest.fixture
async def split(
    make_stack: StackFactory, engine: EmbeddingEngine
) -> AsyncIterator[tuple[str, str]]:
    backend = await make_stack(roles=("registry",), engines=[engine])
    gateway = await make_stack(roles=("gateway",), registry_address=backend.address)
    yield gateway.address, backend.address


async def test_over_grpc_the_vectors_and_the_errors_arrive_the_same(
    split: tuple[str, str], engine: EmbeddingEngine
) -> None:
    gateway, _ = split
    response = await _embed(gateway, _request("over", "the wire"))
    assert [list(e.values) for e in response.embeddings] == [
        vector_of("over"),
        vector_of("the wire"),
    ]
    assert response.usage.input_tokens == 3
    engine.failures = [
        InvalidRequest("dimensions: 7 is not one the upstream takes", field="dimensions")
    ]
    err = await _refused(gateway, _request("x", dimensions=7))
    assert isinstance(err, InvalidRequest)
    assert (err.field, err.message) == ("dimensions", "dimensions: 7 is not one the upstream takes")


async def test_over_grpc_the_backend_call_is_a_client_span_naming_the_deployment(
    split: tuple[str, str], spans: InMemorySpanExporter
) -> None:
    gateway, backend = split
    spans.clear()
    await _embed(gateway, _request("traced"))
    (client,) = (
        s
        for s in spans.get_finished_spans()
        if s.name == "modelyard.v1.BackendService/Embed" and s.kind == SpanKind.CLIENT
    )
    assert dict(client.attributes or {}) == {
        "rpc.system": "grpc",
        "modelyard.backend": "scripted",
        "server.address": backend,
        "modelyard.model": EMBED,
        "modelyard.in_process": False,
    }
