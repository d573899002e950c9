"""The interceptor ends a failed call's span and counts the call before its status goes out:
a client holding its error can read both."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, cast

import grpc
import pytest
from grpc.aio import AbortError
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelyard.meters.instruments import Instrument
from modelyard.server.interceptor import CallGate, _Rpc, _wrap_stream, _wrap_unary
from modelyard.server.undecodable import UndecodableRequests
from modelyard_client.errors import ModelNotFound

RPC = "modelyard.v1.GatewayService/Generate"


class _Context:
    """A call's context whose `abort` notes what was already recorded when it was called."""

    def __init__(self, spans: InMemorySpanExporter, requests: Instrument) -> None:
        self._spans, self._requests = spans, requests
        self.at_abort: tuple[list[str], int] | None = None
        self._code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self._code = code
        counted = sum(s.value for s in self._requests.series.values())
        self.at_abort = ([s.name for s in self._spans.get_finished_spans()], int(counted))
        raise AbortError(code, details)


def _rpc(requests: Instrument) -> _Rpc:
    return _Rpc(RPC, None, CallGate(), UndecodableRequests(), None, requests=requests)


def _requests() -> Instrument:
    return Instrument("modelyard.requests", "{request}", "calls by status")


async def test_a_failed_unary_call_is_ended_and_counted_before_its_status(
    spans: InMemorySpanExporter,
) -> None:
    async def behaviour(request: bytes, context: Any) -> Any:
        raise ModelNotFound("nope/missing")

    requests = _requests()
    context = _Context(spans, requests)
    spans.clear()
    with pytest.raises(AbortError):
        await _wrap_unary(_rpc(requests), behaviour)(b"", cast(Any, context))
    assert context.at_abort == ([RPC], 1)
    assert [s.name for s in spans.get_finished_spans()] == [RPC]  # ended once
    [(attributes, series)] = requests.series.items()
    assert dict(attributes)["rpc.response.status_code"] == "NOT_FOUND"
    assert series.value == 1


async def test_a_failed_stream_is_ended_and_counted_before_its_status(
    spans: InMemorySpanExporter,
) -> None:
    async def behaviour(request: bytes, context: Any) -> AsyncGenerator[Any, None]:
        raise ModelNotFound("nope/missing")
        yield  # an async generator

    requests = _requests()
    context = _Context(spans, requests)
    spans.clear()
    with pytest.raises(AbortError):
        await _wrap_stream(_rpc(requests), behaviour)(b"", cast(Any, context))
    assert context.at_abort == ([RPC], 1)
    assert [s.name for s in spans.get_finished_spans()] == [RPC]
    assert sum(s.value for s in requests.series.values()) == 1
