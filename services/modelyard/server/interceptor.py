"""The one server interceptor: trace context in, errors out, calls counted for the drain.

Every modelyard RPC passes through here once. It continues the caller's W3C
trace (``traceparent`` in gRPC metadata) with a SERVER span, and maps the
project's exception hierarchy to gRPC statuses: a `ModelyardError` becomes its
own code and message with a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer (`modelyard_client.errors.to_status`: its reason,
attributes, retry delay, field violations), a `NotImplementedError` (what the
generated base servicer raises) becomes `Unimplemented` naming the RPC, anything
else becomes INTERNAL with no detail leaked to the caller. It parses each request
itself (`undecodable.py`), so bytes that are not the RPC's message become
`InvalidRequest`. Its `CallGate` counts the calls running and, once the server
drains, refuses new ones. With an `Authenticator` (keys required), each call's
presented key (`x-api-key`, or `authorization: Bearer`) is authenticated and its
RPC's scope checked (`modelyard.security.scopes`) before the request is parsed;
the call then runs as its `Principal` (`running_as`), else as `OPEN`. With an
`AuditLog`, every call (refused ones too) gets its row (`modelyard.security.audit`).
A server stream's writes are its own (`slow_readers.write_all`): a client that
stops reading is cut after the slow reader's timeout.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc.aio import AbortError, ServicerContext
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode

from modelyard.meters.instruments import Attributes, Instrument
from modelyard.ratelimit.caller import api_key_from_metadata
from modelyard.security.audit import AuditLog, note_caller, note_request
from modelyard.security.authn import Authenticator
from modelyard.security.principal import OPEN, Principal, running_as
from modelyard.server.slow_readers import write_all
from modelyard.server.undecodable import Deserializer, UndecodableRequests
from modelyard.telemetry import context_from_metadata, tracer, tracing_enabled
from modelyard_client.errors import BackendUnavailable, ModelyardError, Unimplemented, to_status

log = logging.getLogger(__name__)

_OURS = "/modelyard.v1."

Ctx = ServicerContext[Any, Any]
UnaryBehavior = Callable[[Any, Ctx], Awaitable[Any]]
StreamBehavior = Callable[[Any, Ctx], AsyncGenerator[Any, None]]


class CallGate:
    """Whether a server takes new modelyard calls.

    Closed when the server drains: a call arriving after that is answered
    UNAVAILABLE here for the drain's notice window, while the server still
    accepts connections. (A call that reaches a gRPC server already stopping is
    dropped by the runtime, CANCELLED or UNAVAILABLE as the race goes; the
    window lets balancers move away first.)
    """

    def __init__(self) -> None:
        self.open = True

    def close(self) -> None:
        self.open = False

    def check(self) -> None:
        """Refuse a new call with `BackendUnavailable` once the gate is closed."""
        if not self.open:
            raise BackendUnavailable("this server is draining; call another instance")


class ModelyardServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    """Wraps modelyard's own RPCs; health and reflection pass through untouched."""

    def __init__(
        self,
        gate: CallGate,
        undecodable: UndecodableRequests | None = None,
        authenticator: Authenticator | None = None,
        audit: AuditLog | None = None,
        slow_reader_timeout_s: float | None = None,
        requests: Instrument | None = None,
    ) -> None:
        """`authenticator` None: keys not required, every call runs as `OPEN`.
        `audit`: every call gets its row there (`modelyard.security.audit`).
        `slow_reader_timeout_s`: a stream write waiting longer is cut (`slow_readers.py`).
        `requests`: every call counted there by RPC and status (``modelyard.requests``)."""
        self._gate = gate
        self._undecodable = undecodable or UndecodableRequests()
        self._authenticator = authenticator
        self._audit = audit
        self._slow_reader_timeout_s = slow_reader_timeout_s
        self._requests = requests
        # Each method's handler inside the call path, built once per method and handler.
        self._wrapped: dict[tuple[str, Any], Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith(_OURS):
            return handler
        wrapped = self._wrapped.get((method, handler))
        if wrapped is None:
            wrapped = self._wrapped[method, handler] = self._wrap(method, handler)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        """`handler` of `method` inside the call path, built once per method and handler."""
        rpc = _Rpc(
            method[1:],
            handler.request_deserializer,
            self._gate,
            self._undecodable,
            self._authenticator,
            self._audit,
            self._slow_reader_timeout_s,
            self._requests,
        )
        # No request deserializer: the behaviour gets the bytes and parses them
        # inside the call, where an undecodable request can be an InvalidRequest.
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(rpc, handler.unary_unary),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(rpc, handler.unary_stream),
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


_NOTHING = nullcontext()  # reusable: the context of a call with no span, or no audit log


def _current(span: Span) -> AbstractContextManager[Any]:
    if span is INVALID_SPAN:
        return _NOTHING
    # `_abort_for` sets the status, scrubbed; the library's own would record the raw
    # exception message (an upstream may echo a credential in it).
    return trace.use_span(
        span, end_on_exit=False, record_exception=False, set_status_on_exception=False
    )


@dataclass(frozen=True, slots=True)
class _Rpc:
    """What a wrapped behaviour needs besides its request: the RPC and how to parse it."""

    name: str  # "modelyard.v1.GatewayService/Generate"
    deserializer: Deserializer | None
    gate: CallGate
    undecodable: UndecodableRequests
    authenticator: Authenticator | None
    audit: AuditLog | None = None
    slow_reader_timeout_s: float | None = None  # security.input_limits.slow_reader_timeout
    requests: Instrument | None = None  # modelyard.requests
    # The attributes of each status this RPC ended with, made once.
    _counted: dict[str, Attributes] = field(default_factory=dict)

    def count(self, exc: BaseException | None, context: Ctx) -> None:
        """The call in ``modelyard.requests``, by its status's name ("OK", "NOT_FOUND") and,
        for a modelyard error, its reason as ``error.type`` (rate-limit refusals are
        ``RATE_LIMITED``, ``QUOTA_EXCEEDED``, ``BUDGET_EXCEEDED``)."""
        if self.requests is None:
            return
        status = _status_name(exc, context)
        reason = exc.reason if isinstance(exc, ModelyardError) else ""
        attributes = self._counted.get(status + reason)
        if attributes is None:
            attributes = (("rpc.method", self.name), ("rpc.response.status_code", status))
            if reason:  # RATE_LIMITED, QUOTA_EXCEEDED, BUDGET_EXCEEDED, MODEL_NOT_FOUND, ...
                attributes = (*attributes, ("error.type", reason))
            self._counted[status + reason] = attributes
        self.requests.add(1, attributes)

    def audited(self) -> AbstractContextManager[Any]:
        """The call's audit record, appended when the call ends (refused ones too)."""
        return _NOTHING if self.audit is None else self.audit.call(self.name)

    def admit(self, context: Ctx) -> Principal:
        """Who the call runs as: `Unauthenticated` / `PermissionDenied` when it may not."""
        if self.authenticator is None:
            return OPEN
        presented = api_key_from_metadata(context.invocation_metadata())
        return self.authenticator.admit(presented, self.name)

    def parse(self, raw: bytes, context: Ctx) -> Any:
        if self.deserializer is None:
            return raw
        request = self.undecodable.parse(raw, self.deserializer, self.name, context)
        note_request(request)  # the model it names, for the audit log
        return request


def _status_name(exc: BaseException | None, context: Ctx) -> str:
    """The status a call ends with, by name, as `_abort_for` sets it."""
    if exc is None:
        return "OK"
    if isinstance(exc, ModelyardError):
        return exc.code.name
    if isinstance(exc, AbortError):  # the behaviour aborted with its own status
        code = context.code()
        return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    if isinstance(exc, GeneratorExit) or not isinstance(exc, Exception):
        return "CANCELLED"
    return "UNIMPLEMENTED" if isinstance(exc, NotImplementedError) else "INTERNAL"


def _wrap_unary(rpc: _Rpc, behavior: UnaryBehavior) -> UnaryBehavior:
    async def wrapped(raw: bytes, context: Ctx) -> Any:
        span = _start_span(rpc.name, context)
        ended = _Ended(rpc, span)
        try:
            rpc.gate.check()
            with (
                _current(span),
                rpc.audited(),
                running_as(note_caller(rpc.admit(context))),
            ):
                return await behavior(rpc.parse(raw, context), context)
        except BaseException as exc:
            ended.failed = exc
            await _abort_for(exc, rpc.name, context, span, ended)
            raise  # unreachable: _abort_for always raises
        finally:
            ended(context)

    return wrapped


def _wrap_stream(rpc: _Rpc, behavior: StreamBehavior) -> UnaryBehavior:
    # A reader/writer handler: the writes are its own (`write_all`), so a client that
    # stops reading is cut from inside the call, its generators closed in its context.
    async def wrapped(raw: bytes, context: Ctx) -> None:
        span = _start_span(rpc.name, context)
        ended = _Ended(rpc, span)
        try:
            rpc.gate.check()
            with (
                _current(span),
                rpc.audited(),
                running_as(note_caller(rpc.admit(context))),
            ):
                async with aclosing(behavior(rpc.parse(raw, context), context)) as items:
                    await write_all(items, context, rpc.slow_reader_timeout_s)
        except BaseException as exc:
            ended.failed = exc
            await _abort_for(exc, rpc.name, context, span, ended)
            raise
        finally:
            ended(context)

    return wrapped


class _Ended:
    """A call's end: its span ended and the call counted, once. On a failure this runs just
    before the status goes out (`_abort_for`), so a client that has its error can read the
    span and the count; otherwise when the handler returns (before grpc sends the status)."""

    __slots__ = ("done", "failed", "rpc", "span")

    def __init__(self, rpc: _Rpc, span: Span) -> None:
        self.rpc, self.span = rpc, span
        self.failed: BaseException | None = None
        self.done = False

    def __call__(self, context: Ctx) -> None:
        if not self.done:
            self.done = True
            self.span.end()
            self.rpc.count(self.failed, context)


async def _abort_for(
    exc: BaseException, rpc_name: str, context: Ctx, span: Span, ended: _Ended
) -> None:
    """Turn an exception into the RPC's status, the call `ended` just before it goes out.
    Always raises."""
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
    span.set_status(Status(StatusCode.ERROR, status.details))  # scrubbed, capped
    ended(context)
    await context.abort(
        status.code,
        status.details,
        trailing_metadata=(*err.trailing_metadata(), *status.trailing_metadata),
    )
