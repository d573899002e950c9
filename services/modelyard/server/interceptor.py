"""The one server interceptor: trace context in, errors out.

Every modelyard RPC passes through here once. It continues the caller's W3C
trace (``traceparent`` in gRPC metadata) with a SERVER span, and maps the
project's exception hierarchy to gRPC statuses: a `ModelyardError` becomes its
own code and message with a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer (`modelyard.errors.to_status`: its reason,
attributes, retry delay, field violations), a `NotImplementedError` (what the
generated base servicer raises) becomes `Unimplemented` naming the RPC, anything
else becomes INTERNAL with no detail leaked to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractContextManager, aclosing, nullcontext
from typing import Any

import grpc
from grpc.aio import AbortError, ServicerContext
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from modelyard.errors import ModelyardError, Unimplemented, to_status
from modelyard.telemetry import context_from_metadata, tracer, tracing_enabled

log = logging.getLogger(__name__)

_OURS = "/modelyard.v1."

Ctx = ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Ctx], Awaitable[Any]]
StreamBehavior = Callable[[Any, Ctx], AsyncGenerator[Any, None]]


class ModelyardServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Wraps modelyard's own RPCs; health and reflection pass through untouched."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(_OURS):
            return handler
        rpc_name = method[1:]  # "modelyard.v1.GatewayService/Generate"
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(rpc_name, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(rpc_name, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming RPCs in the contract yet


def _start_span(rpc_name: str, context: Ctx) -> Span:
    """The call's SERVER span, continuing the caller's trace; none when tracing is off."""
    if not tracing_enabled():  # measured: even a no-op span costs ~50 µs a call
        return INVALID_SPAN
    service, _, method = rpc_name.partition("/")
    return tracer().start_span(
        rpc_name,
        context=context_from_metadata(context.invocation_metadata()),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
    )


def _current(span: Span) -> AbstractContextManager[Any]:
    return nullcontext() if span is INVALID_SPAN else trace.use_span(span, end_on_exit=False)


def _wrap_unary(rpc_name: str, behavior: UnaryBehavior) -> UnaryBehavior:
    async def wrapped(request: Any, context: Ctx) -> Any:
        span = _start_span(rpc_name, context)
        try:
            with _current(span):
                return await behavior(request, context)
        except BaseException as exc:
            await _abort_for(exc, rpc_name, context, span)
            raise  # unreachable: _abort_for always raises
        finally:
            span.end()

    return wrapped


def _wrap_stream(rpc_name: str, behavior: StreamBehavior) -> StreamBehavior:
    async def wrapped(request: Any, context: Ctx) -> AsyncGenerator[Any, None]:
        span = _start_span(rpc_name, context)
        try:
            with _current(span):
                async with aclosing(behavior(request, context)) as items:
                    async for item in items:
                        yield item
        except BaseException as exc:
            await _abort_for(exc, rpc_name, context, span)
            raise
        finally:
            span.end()

    return wrapped


async def _abort_for(exc: BaseException, rpc_name: str, context: Ctx, span: Span) -> None:
    """Turn an exception into the RPC's status. Always raises."""
    if isinstance(exc, AbortError | GeneratorExit) or not isinstance(exc, Exception):
        # Already aborted, or cancelled/closed by the runtime: leave it alone.
        raise exc
    if isinstance(exc, ModelyardError):
        err = exc
    elif isinstance(exc, NotImplementedError):
        err = Unimplemented(f"{rpc_name} is not implemented yet")
    else:
        log.exception("unhandled error in %s", rpc_name)
        err = ModelyardError(f"internal error in {rpc_name}")
    status = rpc_status.to_status(to_status(err))
    span.set_attribute("rpc.grpc.status_code", err.code.value[0])
    span.set_status(Status(StatusCode.ERROR, err.message))
    await context.abort(
        status.code,
        status.details,
        trailing_metadata=(*err.trailing_metadata(), *status.trailing_metadata),
    )
