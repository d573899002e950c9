"""Channels to backend services, and calls to them with errors translated."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import grpc
from opentelemetry.trace import SpanKind, Status, StatusCode

from modelyard.errors import BackendUnavailable, ModelyardError, error_from_status
from modelyard.telemetry import metadata_with_trace, tracer
from modelyard.v1 import backend_pb2, backend_pb2_grpc, common_pb2


class BackendPool:
    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, backend_pb2_grpc.BackendServiceAsyncStub] = {}

    def _stub(self, endpoint: str) -> backend_pb2_grpc.BackendServiceAsyncStub:
        stub = self._stubs.get(endpoint)
        if stub is None:
            channel = grpc.aio.insecure_channel(
                endpoint,
                options=[
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ],
            )
            self._channels[endpoint] = channel
            stub = self._stubs[endpoint] = backend_pb2_grpc.BackendServiceStub(channel)
        return stub

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        self._stubs.clear()

    async def infer_stream(
        self,
        deployment: common_pb2.Deployment,
        request: backend_pb2.InferRequest,
        timeout_s: float,
    ) -> AsyncGenerator[backend_pb2.InferChunk, None]:
        """Stream from the backend; failures surface as modelyard errors naming it."""
        with tracer().start_as_current_span(
            "modelyard.v1.BackendService/InferStream",
            kind=SpanKind.CLIENT,
            attributes={
                "rpc.system": "grpc",
                "modelyard.backend": deployment.backend,
                "server.address": deployment.endpoint,
                "modelyard.model": request.model_id,
            },
        ) as span:
            call = self._stub(deployment.endpoint).InferStream(
                request, timeout=timeout_s, metadata=metadata_with_trace()
            )
            try:
                async for chunk in call:
                    yield chunk
            except grpc.aio.AioRpcError as exc:
                err = _translate(exc, deployment)
                span.set_status(Status(StatusCode.ERROR, err.message))
                raise err from None
            finally:
                call.cancel()  # no-op when finished; stops the backend when we stop early


def _translate(exc: grpc.aio.AioRpcError, deployment: common_pb2.Deployment) -> ModelyardError:
    code, details = exc.code(), exc.details() or ""
    where = f"backend '{deployment.backend}' at {deployment.endpoint}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return BackendUnavailable(f"{where} is unavailable: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        err = error_from_status(code, f"{where} did not answer in time: {details}")
        return err
    return error_from_status(code, details, exc.trailing_metadata())  # type: ignore[arg-type]
