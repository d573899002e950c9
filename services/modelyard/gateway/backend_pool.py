"""Channels to backend services, and calls to them with errors translated.

A backend hosted in the gateway's own process (the embedded default) is
called directly, not over a loopback gRPC hop to itself: measured on this
machine, that hop cost about 1.2-2 ms of CPU per request, more than all of
the gateway's own work. Errors and spans are the same on both paths.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

import grpc
from opentelemetry.trace import SpanKind, Status, StatusCode

from modelyard.backends.answer_stream import piece_to_chunk
from modelyard.backends.host import BackendHost
from modelyard.gateway.stream_deadlines import (
    PieceDeadlines,
    PieceTimeExpired,
    PieceTimer,
    StreamDeadlines,
)
from modelyard.security.channels import PLAINTEXT, InternalChannels
from modelyard.telemetry import current_span, metadata_with_trace
from modelyard_client.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    FirstTokenTimeout,
    ModelyardError,
    StreamStalled,
    cap_message,
    error_from_rpc,
)
from modelyard_client.v1 import backend_pb2, backend_pb2_grpc, common_pb2

# What calls still on a replaced channel get to end (`BackendPool.reconnect`).
RECONNECT_GRACE_S = 5.0


class BackendPool:
    def __init__(
        self, deadlines: StreamDeadlines | None = None, channels: InternalChannels = PLAINTEXT
    ) -> None:
        """`deadlines`: each model's first-piece and stall deadlines (None: none but the
        call's); `channels`: how the backends are reached."""
        self._deadlines = deadlines or StreamDeadlines()
        self._channel_factory = channels
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, backend_pb2_grpc.BackendServiceAsyncStub] = {}
        self._in_process: dict[str, BackendHost] = {}
        self._beside: dict[str, BackendHost] = {}

    def add_in_process(self, endpoint: str, host: BackendHost) -> None:
        """Call `host` directly for deployments at `endpoint` (it runs in this process)."""
        self._in_process[endpoint] = host

    def add_beside(self, endpoint: str, host: BackendHost) -> None:
        """Call `host` directly for the models it serves of deployments at `endpoint`: the
        same engines run there and here (a gateway worker's remote-provider engines, its
        primary at `endpoint`). Other models, health, loads and unloads go to `endpoint`."""
        self._beside[endpoint] = host

    def _here(self, deployment: common_pb2.Deployment, model_id: str) -> BackendHost | None:
        """The host in this process that serves `model_id` of `deployment`, if any."""
        host = self._in_process.get(deployment.endpoint)
        if host is None and self._beside:
            beside = self._beside.get(deployment.endpoint)
            if beside is not None and beside.serves(model_id):
                return beside
        return host

    def _stub(self, endpoint: str) -> backend_pb2_grpc.BackendServiceAsyncStub:
        stub = self._stubs.get(endpoint)
        if stub is None:
            channel = self._channel_factory.open(
                endpoint,
                [
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    ("grpc.max_send_message_length", 64 * 1024 * 1024),
                    # Its own connections, not the process's shared ones: a new channel
                    # (`reconnect`) then really connects anew, not through a subchannel
                    # still waiting out its backoff.
                    ("grpc.use_local_subchannel_pool", 1),
                ],
            )
            self._channels[endpoint] = channel
            stub = self._stubs[endpoint] = backend_pb2_grpc.BackendServiceStub(channel)
        return stub

    async def reconnect(self, endpoint: str, grace_s: float = RECONNECT_GRACE_S) -> bool:
        """A new channel to the backend at `endpoint` for the next call (the health
        monitor's ``reconnect``): a channel whose backend went away waits out gRPC's
        reconnect backoff (up to two minutes) before it tries again; a new one connects
        at once. Calls still on the old channel get `grace_s` to end. False when there
        is nothing to reconnect: the backend runs in this process, or no channel is open."""
        if endpoint in self._in_process:
            return False
        old = self._channels.pop(endpoint, None)
        self._stubs.pop(endpoint, None)
        if old is None:
            return False
        await old.close(grace_s)
        return True

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()
        self._stubs.clear()

    async def health(
        self, deployment: common_pb2.Deployment, timeout_s: float = 5.0
    ) -> backend_pb2.BackendHealthResponse:
        """The backend's own health (`BackendService.Health`): its engines' worst status
        with their reasons, and the models it holds; nothing is generated."""
        host = self._in_process.get(deployment.endpoint)
        if host is not None:
            status, reason = host.health()
            return backend_pb2.BackendHealthResponse(
                backend=host.name, status=status, reason=reason, loaded_models=host.loaded_models()
            )
        request = backend_pb2.BackendHealthRequest()
        try:
            return await self._stub(deployment.endpoint).Health(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, deployment) from None

    async def load(
        self,
        deployment: common_pb2.Deployment,
        model_id: str,
        keep_loaded: Sequence[str] = (),
        timeout_s: float = 300.0,
    ) -> float:
        """Have the backend load `model_id` beside `keep_loaded`; the milliseconds it took.

        A backend whose memory budget cannot hold them together refuses
        (`MemoryBudgetExceeded`) instead of unloading one.
        """
        host = self._in_process.get(deployment.endpoint)
        if host is not None:
            return await host.load(model_id, keep_loaded)
        request = backend_pb2.LoadRequest(model_id=model_id, keep_loaded=keep_loaded)
        try:
            answer = await self._stub(deployment.endpoint).Load(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, deployment) from None
        return answer.load_ms

    async def unload(
        self, deployment: common_pb2.Deployment, model_id: str, timeout_s: float = 300.0
    ) -> bool:
        """Have the backend unload `model_id` once its calls have finished; whether it was
        loaded."""
        host = self._in_process.get(deployment.endpoint)
        if host is not None:
            return await host.engine_for(model_id).unload(model_id)
        request = backend_pb2.UnloadRequest(model_id=model_id)
        try:
            answer = await self._stub(deployment.endpoint).Unload(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, deployment) from None
        return answer.was_loaded

    def infer_stream(
        self,
        deployment: common_pb2.Deployment,
        request: backend_pb2.InferRequest,
        timeout_s: float,
    ) -> AsyncGenerator[backend_pb2.InferChunk, None]:
        """Stream from the backend; failures surface as modelyard errors naming it.

        `timeout_s` bounds the whole call; the model's first-piece and stall
        deadlines (`StreamDeadlines`) bound the waits inside it. Whichever passes,
        the backend call is cancelled.
        """
        deadlines = self._deadlines.for_model(request.model_id)
        host = self._here(deployment, request.model_id)
        if host is not None:
            return self._in_process_stream(host, deployment, request, timeout_s, deadlines)
        return self._grpc_stream(deployment, request, timeout_s, deadlines)

    async def _in_process_stream(
        self,
        host: BackendHost,
        deployment: common_pb2.Deployment,
        request: backend_pb2.InferRequest,
        timeout_s: float,
        deadlines: PieceDeadlines,
    ) -> AsyncGenerator[backend_pb2.InferChunk, None]:
        # The gRPC path has the call's deadline; this one bounds the total itself,
        # an engine that says nothing included.
        timer = PieceTimer(timeout_s, deadlines)
        with current_span(
            "modelyard.v1.BackendService/InferStream",
            SpanKind.INTERNAL,
            lambda: _span_attributes(deployment, request, in_process=True),
        ) as span:
            pieces = host.infer_stream(request.model_id, request.input, request.params)
            try:
                async with aclosing(pieces):  # closing it cancels the engine's generation
                    read = pieces.__anext__
                    while True:
                        try:
                            piece = await timer.next(read)
                        except StopAsyncIteration:
                            break
                        yield piece_to_chunk(piece)
            except PieceTimeExpired as expired:
                err = _expired(expired, deployment, request, "(in process)")
                span.set_status(Status(StatusCode.ERROR, cap_message(err.message)))
                raise err from None
            finally:
                timer.close()

    async def _grpc_stream(
        self,
        deployment: common_pb2.Deployment,
        request: backend_pb2.InferRequest,
        timeout_s: float,
        deadlines: PieceDeadlines,
    ) -> AsyncGenerator[backend_pb2.InferChunk, None]:
        with current_span(
            "modelyard.v1.BackendService/InferStream",
            SpanKind.CLIENT,
            lambda: _span_attributes(deployment, request, in_process=False),
        ) as span:
            # The call's own deadline travels with it (gRPC's, to the backend's
            # server); the timer holds only the piece deadlines.
            call = self._stub(deployment.endpoint).InferStream(
                request, timeout=timeout_s, metadata=metadata_with_trace()
            )
            timer = PieceTimer(None, deadlines)
            try:
                while True:
                    chunk = await timer.next(call.read)
                    if not isinstance(chunk, backend_pb2.InferChunk):
                        break  # grpc.aio.EOF (not in grpc-stubs): the stream ended
                    yield chunk
            except grpc.aio.AioRpcError as exc:
                err = _translate(exc, deployment)
                span.set_status(Status(StatusCode.ERROR, cap_message(err.message)))
                raise err from None
            except PieceTimeExpired as expired:
                err = _expired(expired, deployment, request, f"at {deployment.endpoint}")
                span.set_status(Status(StatusCode.ERROR, cap_message(err.message)))
                raise err from None
            finally:
                timer.close()
                call.cancel()  # no-op when finished; stops the backend when we stop early

    async def embed(
        self,
        deployment: common_pb2.Deployment,
        request: backend_pb2.BackendEmbedRequest,
        timeout_s: float,
    ) -> backend_pb2.BackendEmbedResponse:
        """The backend's vectors for `request.inputs`; failures surface as modelyard errors
        naming it, as `infer_stream`'s do. `timeout_s` bounds the whole call."""
        host = self._here(deployment, request.model_id)
        with current_span(
            "modelyard.v1.BackendService/Embed",
            SpanKind.INTERNAL if host is not None else SpanKind.CLIENT,
            lambda: _span_attributes(deployment, request, in_process=host is not None),
        ) as span:
            try:
                if host is not None:
                    try:
                        async with asyncio.timeout(timeout_s):
                            return await host.embed(
                                request.model_id, request.inputs, request.dimensions
                            )
                    except TimeoutError:
                        raise DeadlineExceeded(
                            f"backend '{deployment.backend}' (in process) did not answer the "
                            f"embeddings of '{request.model_id}' within {timeout_s:.3g}s"
                        ) from None
                try:
                    return await self._stub(deployment.endpoint).Embed(
                        request, timeout=timeout_s, metadata=metadata_with_trace()
                    )
                except grpc.aio.AioRpcError as exc:
                    raise _translate(exc, deployment) from None
            except ModelyardError as err:
                span.set_status(Status(StatusCode.ERROR, cap_message(err.message)))
                raise


def _span_attributes(
    deployment: common_pb2.Deployment,
    request: backend_pb2.InferRequest | backend_pb2.BackendEmbedRequest,
    *,
    in_process: bool,
) -> dict[str, str | bool]:
    return {
        "rpc.system": "grpc",
        "modelyard.backend": deployment.backend,
        "server.address": deployment.endpoint,
        "modelyard.model": request.model_id,
        "modelyard.in_process": in_process,
    }


def _translate(exc: grpc.aio.AioRpcError, deployment: common_pb2.Deployment) -> ModelyardError:
    """The backend's own error class; a plain unreachable or late backend is named."""
    err = error_from_rpc(exc)
    where = f"backend '{deployment.backend}' at {deployment.endpoint}"
    if type(err) is BackendUnavailable:  # its retry delay, if the upstream gave one, stays
        return err.from_details(f"{where} is unavailable: {err.message}", err.wire_details())
    if type(err) is DeadlineExceeded:
        return DeadlineExceeded(f"{where} did not answer in time: {err.message}")
    return err


def _expired(
    expired: PieceTimeExpired,
    deployment: common_pb2.Deployment,
    request: backend_pb2.InferRequest,
    where: str,
) -> DeadlineExceeded:
    """The error of a deadline that passed: the call's, or the model's first-piece or stall."""
    backend = f"backend '{deployment.backend}' {where}"
    if expired.which == "first_piece":
        return FirstTokenTimeout(
            f"'{request.model_id}' on {backend} sent nothing within its first-token "
            f"deadline of {expired.seconds:g}s"
        )
    if expired.which == "stall":
        pieces = f"{expired.pieces} piece{'s' if expired.pieces != 1 else ''}"
        return StreamStalled(
            f"'{request.model_id}' on {backend} stalled: nothing for {expired.seconds:g}s "
            f"after {pieces} (its stall deadline)"
        )
    return DeadlineExceeded(f"{backend} did not finish within {expired.seconds:.3g}s")
