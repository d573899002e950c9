"""Every error class crosses a real gRPC server and arrives as itself, with its attributes.

The server is a grpc.aio server on port 0 with the modelyard interceptor; the
callers are the Python client (`modelyard_client`, blocking, unary and
streaming) and the internal path (a grpc.aio stub + `error_from_rpc`, what the
gateway uses towards backends and the registry).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from modelyard.server.runtime import ServiceBinding, start_server
from modelyard_client import GatewayClient
from modelyard_client.errors import (
    DOMAIN,
    AllModelsFailed,
    AlreadyExists,
    Attempt,
    BackendUnavailable,
    BudgetExceeded,
    CatalogFileError,
    ConfigError,
    ConfigFileUnreadable,
    ConfigProblem,
    ContentBlocked,
    ContentRejected,
    ContextLengthExceeded,
    DeadlineExceeded,
    FailedPrecondition,
    FirstTokenTimeout,
    InvalidRequest,
    MemoryBudgetExceeded,
    ModelNotFound,
    ModelyardError,
    NoSuitableModel,
    NotFound,
    OutputSchemaMismatch,
    Overloaded,
    PermissionDenied,
    ProviderAccessDenied,
    ProviderAuthFailed,
    ProviderError,
    ProviderProtocolError,
    ProviderRefusal,
    QuotaExceeded,
    QuotaNeverFits,
    RateLimited,
    RateLimiterUnavailable,
    RefusedLimit,
    RequestTooLarge,
    SlowReaderCut,
    StreamStalled,
    StreamTruncated,
    TooManyStreams,
    Unauthenticated,
    Unimplemented,
    WatcherFellBehind,
    error_from_rpc,
    registered_classes,
)
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

GENERATE = "modelyard.v1.GatewayService/Generate"

# One instance of every class, with every attribute it carries set to something
# a mix-up would show (two limits, three attempts, a problem without a line).
RAISED: dict[str, ModelyardError] = {
    "ModelyardError": ModelyardError("the catalog store is corrupt"),
    "InvalidRequest": InvalidRequest("params.top_k must be >= 0, got -1", field="params.top_k"),
    "InvalidRequest-no-field": InvalidRequest("the batch is empty"),
    "ConfigError": ConfigError(
        [
            ConfigProblem("server.listen", "must be host:port", line=3),
            ConfigProblem("model_system.backends.olama", "unknown key", line=9),
            ConfigProblem("selection", "is required"),
        ],
        source="modelyard.yaml",
    ),
    "ConfigFileUnreadable": ConfigFileUnreadable(
        [ConfigProblem("", "cannot read /etc/modelyard.yaml: No such file")]
    ),
    "RequestTooLarge": RequestTooLarge("input is 9 bytes; the limit is 8 bytes"),
    "QuotaNeverFits": QuotaNeverFits(
        [RefusedLimit("model:p/m", "model 'p/m'", "tokens_per_minute", 100.0, math.inf)], 500
    ),
    "NotFound": NotFound("provider 'acme' is not registered"),
    "ModelNotFound": ModelNotFound("nope/missing", "the registry"),
    "AlreadyExists": AlreadyExists("model 'a/b' is registered; pass upsert to replace it"),
    "RateLimited": RateLimited("upstream 'openai' answered HTTP 429", 7.25),
    "QuotaExceeded": QuotaExceeded(
        [
            RefusedLimit("key:anonymous", "api key 'anonymous'", "requests_per_minute", 2.0, 12.5),
            RefusedLimit("model:p/m", "model 'p/m'", "tokens_per_minute", 60.0, 30.0),
        ],
        40,
    ),
    "Overloaded": Overloaded(
        "upstream 'custom' is at capacity: 256 call(s) running and 512 waiting", 2.5, "upstream:x"
    ),
    "FailedPrecondition": FailedPrecondition("this registry has no discovery sources configured"),
    "NoSuitableModel": NoSuitableModel("no model meets the constraints (vision: none)"),
    "WatcherFellBehind": WatcherFellBehind("watcher fell behind; resume with after_revision=41"),
    "MemoryBudgetExceeded": MemoryBudgetExceeded(
        "local/b", {"local/b": 342, "local/a": 341}, budget_mb=512, max_loaded=2
    ),
    "BackendUnavailable": BackendUnavailable("backend 'ollama' at 10.0.0.2:11434 is unavailable"),
    "BackendUnavailable-retry": BackendUnavailable("upstream 'x' answered HTTP 503: busy", 30.0),
    "AllModelsFailed": AllModelsFailed(
        [
            Attempt.of("a/one", BackendUnavailable("model 'a/one' has no deployment")),
            Attempt.of("b/two", ModelNotFound("b/two")),
            Attempt.of("c/three", RateLimited("upstream 'c' answered HTTP 429", 1.5)),
        ]
    ),
    "RateLimiterUnavailable": RateLimiterUnavailable("redis at 127.0.0.1:6390 did not answer"),
    "ProviderError": ProviderError("upstream 'mistral' answered HTTP 500: overloaded"),
    "ProviderAuthFailed": ProviderAuthFailed(
        "upstream 'openai' rejected this gateway's API key for the provider (HTTP 401; not the "
        "caller's credentials): Incorrect API key"
    ),
    "ProviderAccessDenied": ProviderAccessDenied(
        "upstream 'openai' denied this gateway's API key for the provider (HTTP 403; not the "
        "caller's credentials): Country, region, or territory not supported"
    ),
    "ProviderProtocolError": ProviderProtocolError(
        "upstream 'llama' sent a malformed event for 'llama/x' (not JSON): '{\"choi'"
    ),
    "StreamTruncated": StreamTruncated("upstream 'llama' ended the stream without finishing"),
    "DeadlineExceeded": DeadlineExceeded("backend 'local' did not finish within 30s"),
    "FirstTokenTimeout": FirstTokenTimeout("'custom/a' sent no token within 2s"),
    "StreamStalled": StreamStalled("'custom/a' sent nothing for 5s after 20 pieces"),
    "ProviderRefusal": ProviderRefusal("upstream 'x' refused the input", "invalid_prompt"),
    "ContextLengthExceeded": ContextLengthExceeded(
        "upstream 'openai' answered HTTP 400: this model's maximum context length is 8192",
        "context_length_exceeded",
    ),
    "ContentRejected": ContentRejected(
        "upstream 'openai' refused the input under its content policy", "content_policy_violation"
    ),
    "Unimplemented": Unimplemented("modelyard.v1.HotSwapService/Swap is not implemented yet"),
    "CatalogFileError": CatalogFileError("providers.x.models[0].name: must be a non-empty string"),
    "ContentBlocked": ContentBlocked(
        "input.text matches content filter rule 'no_internal_codenames'",
        rule="no_internal_codenames",
        stage="input",
        field="input.text",
    ),
    "OutputSchemaMismatch": OutputSchemaMismatch(
        "the answer does not follow params.response_schema_json at $.age: 'x' is not of type "
        "'integer' (schema path properties/age/type)",
        schema_path="properties/age/type",
        instance_path="$.age",
    ),
    "Unauthenticated": Unauthenticated("a valid modelyard API key is required"),
    "PermissionDenied": PermissionDenied("this key may not use model 'b/two'"),
    "BudgetExceeded": BudgetExceeded(
        "team 'research' has spent $9.97 of its $10.00 daily budget; resets at 00:00 UTC",
        scope="team:research",
        window="day",
        budget_usd=10.0,
        spent_usd=9.97,
        resets_at="2026-12-02T00:00:00Z",
        retry_after_s=3600.25,
    ),
    "TooManyStreams": TooManyStreams(
        "key 'k-1' already holds 64 open streams; the limit is 64 "
        "(security.input_limits.max_streams_per_key)",
        key="k-1",
        limit=64,
    ),
    "SlowReaderCut": SlowReaderCut(
        "the client read nothing for 30s; the stream was cut "
        "(security.input_limits.slow_reader_timeout)",
        timeout_s=30.0,
    ),
}


class Raising(gateway_pb2_grpc.GatewayServiceServicer):
    """Raises `RAISED[request.model]`, or an arbitrary exception for the other names."""

    async def Generate(self, request: Any, context: Any) -> gateway_pb2.GenerateResponse:
        raise _error_for(request.model)

    async def GenerateStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield gateway_pb2.GenerateChunk(text="partial ")
        raise _error_for(request.model)


def _error_for(name: str) -> BaseException:
    if name == "secret-crash":
        return RuntimeError("token sk-live-1234 in /etc/secrets/openai")
    if name == "not-implemented":
        return NotImplementedError("Method not implemented!")
    return RAISED[name]


@pytest.fixture
async def address() -> AsyncIterator[str]:
    servicer = Raising()  # type: ignore[abstract]  # BatchGenerate, Compare: the base's UNIMPLEMENTED
    binding = ServiceBinding(
        "modelyard.v1.GatewayService",
        lambda server: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server),
    )
    running = await start_server([binding], "127.0.0.1:0")
    yield f"127.0.0.1:{running.port}"
    await running.server.stop(0)


def _request(name: str) -> gateway_pb2.GenerateRequest:
    request = gateway_pb2.GenerateRequest(model=name)
    request.input.text = "hi"
    return request


async def _via_client_generate(address: str, name: str) -> ModelyardError:
    def call() -> ModelyardError:
        with GatewayClient(address, timeout_s=10) as client:
            try:
                client.generate(name, "hi")
            except ModelyardError as err:
                return err
        raise AssertionError("the call succeeded")

    return await asyncio.to_thread(call)  # a blocking client: off the server's event loop


async def _via_client_stream(address: str, name: str) -> ModelyardError:
    def call() -> ModelyardError:
        with GatewayClient(address, timeout_s=10) as client:
            try:
                list(client.stream(name, "hi"))
            except ModelyardError as err:
                return err
        raise AssertionError("the call succeeded")

    return await asyncio.to_thread(call)


async def _via_internal_path(address: str, name: str) -> ModelyardError:
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(_request(name), timeout=10)
        except grpc.aio.AioRpcError as exc:
            return error_from_rpc(exc)
    raise AssertionError("the call succeeded")


Caller = Callable[[str, str], Awaitable[ModelyardError]]
CALLERS: dict[str, Caller] = {
    "client-generate": _via_client_generate,
    "client-stream": _via_client_stream,
    "internal-aio": _via_internal_path,
}


def test_the_cases_cover_every_registered_class() -> None:
    assert {type(err) for err in RAISED.values()} == set(registered_classes())


@pytest.mark.parametrize("caller", CALLERS.values(), ids=CALLERS.keys())
@pytest.mark.parametrize("name", RAISED.keys())
async def test_every_class_arrives_as_itself_with_its_attributes(
    address: str, name: str, caller: Caller
) -> None:
    raised = RAISED[name]
    rebuilt = await caller(address, name)
    assert type(rebuilt) is type(raised)
    assert vars(rebuilt) == vars(raised)  # message, model_id, retry_after_s, field, attempts...


async def test_model_not_found_arrives_with_its_model_id(address: str) -> None:
    rebuilt = await _via_client_generate(address, "ModelNotFound")
    assert isinstance(rebuilt, ModelNotFound)
    assert rebuilt.model_id == "nope/missing"
    assert rebuilt.message == "model 'nope/missing' is not in the registry"


async def test_rate_limited_arrives_with_its_retry_delay(address: str) -> None:
    rebuilt = await _via_client_generate(address, "RateLimited")
    assert isinstance(rebuilt, RateLimited)
    assert rebuilt.retry_after_s == 7.25


async def test_quota_exceeded_arrives_with_every_refusing_limit(address: str) -> None:
    rebuilt = await _via_client_generate(address, "QuotaExceeded")
    assert isinstance(rebuilt, QuotaExceeded)
    raised = RAISED["QuotaExceeded"]
    assert isinstance(raised, QuotaExceeded)
    assert rebuilt.limits == raised.limits
    assert rebuilt.retry_after_s == 30.0  # the longest wait
    assert rebuilt.tokens == 40


async def test_invalid_request_arrives_with_its_field(address: str) -> None:
    rebuilt = await _via_client_generate(address, "InvalidRequest")
    assert isinstance(rebuilt, InvalidRequest)
    assert rebuilt.field == "params.top_k"


async def test_all_models_failed_arrives_with_its_attempts_as_a_list(address: str) -> None:
    rebuilt = await _via_client_generate(address, "AllModelsFailed")
    assert isinstance(rebuilt, AllModelsFailed)
    assert rebuilt.attempts == (
        Attempt("a/one", "UNAVAILABLE", "BACKEND_UNAVAILABLE", "model 'a/one' has no deployment"),
        Attempt("b/two", "NOT_FOUND", "MODEL_NOT_FOUND", "model 'b/two' is not in the catalog"),
        Attempt(
            "c/three",
            "RESOURCE_EXHAUSTED",
            "RATE_LIMITED",
            "upstream 'c' answered HTTP 429; retry after 1.500s",
        ),
    )


async def _raw_failure(address: str, name: str) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await gateway_pb2_grpc.GatewayServiceStub(channel).Generate(_request(name), timeout=10)
    return failed.value


def _details_of(exc: grpc.aio.AioRpcError) -> list[Any]:
    """The google.rpc details a grpcio-status client reads, unpacked."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]  # grpc_status-stubs: grpc.Call only
    assert status is not None
    out: list[Any] = []
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.BadRequest,
        ):
            message = kind()
            if detail.Unpack(message):
                out.append(message)
    assert len(out) == len(status.details)  # no detail of another kind
    return out


async def test_the_wire_carries_error_info_with_reason_domain_and_metadata(address: str) -> None:
    exc = await _raw_failure(address, "ModelNotFound")
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    assert _details_of(exc) == [
        error_details_pb2.ErrorInfo(
            reason="MODEL_NOT_FOUND", domain="modelyard", metadata={"model_id": "nope/missing"}
        )
    ]


async def test_the_wire_carries_retry_info_and_keeps_the_plain_trailer(address: str) -> None:
    exc = await _raw_failure(address, "RateLimited")
    info, retry = _details_of(exc)
    assert info.reason == "RATE_LIMITED"
    assert (retry.retry_delay.seconds, retry.retry_delay.nanos) == (7, 250_000_000)
    trailers = dict(cast(Any, exc.trailing_metadata()))  # grpc.aio.Metadata: (key, value) pairs
    assert trailers["retry-after-ms"] == "7250"


async def test_the_wire_carries_bad_request_field_violations(address: str) -> None:
    exc = await _raw_failure(address, "InvalidRequest")
    info, bad = _details_of(exc)
    assert info.reason == "INVALID_REQUEST"
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("params.top_k", "params.top_k must be >= 0, got -1")
    ]


async def test_an_unexpected_exception_is_internal_and_leaks_nothing(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    exc = await _raw_failure(address, "secret-crash")
    assert exc.code() == grpc.StatusCode.INTERNAL
    assert exc.details() == f"internal error in {GENERATE}"
    assert _details_of(exc) == [error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN)]
    sent = repr(exc.trailing_metadata()) + (exc.details() or "")
    assert "sk-live" not in sent and "secrets" not in sent
    rebuilt = error_from_rpc(exc)
    assert type(rebuilt) is ModelyardError
    assert rebuilt.message == f"internal error in {GENERATE}"
    assert "sk-live-1234" in caplog.text  # the server's own log keeps it


async def test_not_implemented_arrives_as_unimplemented_naming_the_rpc(address: str) -> None:
    rebuilt = await _via_internal_path(address, "not-implemented")
    assert type(rebuilt) is Unimplemented
    assert rebuilt.message == f"{GENERATE} is not implemented yet"


class Foreign(gateway_pb2_grpc.GatewayServiceServicer):
    """A server that is not modelyard's: plain statuses, or Google-style details of its own."""

    async def Generate(self, request: Any, context: Any) -> gateway_pb2.GenerateResponse:
        if request.model == "foreign-retry":
            status = status_pb2.Status(code=8, message="slow down")  # RESOURCE_EXHAUSTED
            status.details.add().Pack(
                error_details_pb2.ErrorInfo(reason="RATE_LIMIT_EXCEEDED", domain="example.com")
            )
            retry = error_details_pb2.RetryInfo()
            retry.retry_delay.FromMilliseconds(2500)
            status.details.add().Pack(retry)
            await context.abort_with_status(rpc_status.to_status(status))
        await context.abort(grpc.StatusCode[request.model], f"plain {request.model}")
        raise AssertionError("abort returned")


@pytest.fixture
async def foreign_address() -> AsyncIterator[str]:
    server = grpc.aio.server()  # no modelyard interceptor
    servicer = Foreign()  # type: ignore[abstract]  # Generate is the one RPC it answers
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("INVALID_ARGUMENT", InvalidRequest),
        ("NOT_FOUND", NotFound),
        ("RESOURCE_EXHAUSTED", RequestTooLarge),
        ("FAILED_PRECONDITION", FailedPrecondition),
        ("UNAVAILABLE", BackendUnavailable),
        ("DEADLINE_EXCEEDED", DeadlineExceeded),
        ("PERMISSION_DENIED", ModelyardError),
    ],
)
async def test_a_status_without_error_info_maps_by_its_code(
    foreign_address: str, code: str, cls: type[ModelyardError]
) -> None:
    rebuilt = await _via_client_generate(foreign_address, code)
    assert type(rebuilt) is cls
    assert rebuilt.message == f"plain {code}"


async def test_a_foreign_error_info_maps_by_code_and_keeps_its_retry_delay(
    foreign_address: str,
) -> None:
    rebuilt = await _via_internal_path(foreign_address, "foreign-retry")
    assert type(rebuilt) is RateLimited
    assert rebuilt.retry_after_s == 2.5
    assert rebuilt.message == "slow down"
