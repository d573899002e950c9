"""Calls for services this server does not hold, passed on whole to one that does.

A gateway worker (`modelyard up --workers N`) shares the public port with the
primary process (SO_REUSEPORT: the kernel gives each new connection to one of
them), but serves only the gateway. A client's connection may land on a worker
and still call the registry, the selector or hot-swap there: `Forwarder`
passes every call for a service the worker does not serve to the primary's
private address, as bytes (nothing is decoded), with its metadata and its
deadline, and answers with what came back: messages, initial and trailing
metadata, status code and details — the typed error details in
``grpc-status-details-bin`` among them, so the client reads the same error it
would have read from the primary. A call the client cancels is cancelled there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

import grpc

from modelyard.security.channels import InternalChannels
from modelyard.server.runtime import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

# The primary's answers are as large as a client may take.
FORWARDING_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
# Metadata gRPC itself sets on a call; everything else is the caller's and passes on.
_TRANSPORT_KEYS = ("user-agent", "te", "content-type", "grpc-accept-encoding", "grpc-encoding")


def forwardable(metadata: Iterable[Any]) -> list[tuple[str, Any]]:
    """The caller's own metadata: pseudo-headers and gRPC's transport keys left out."""
    return [(k, v) for k, v in metadata if not k.startswith(":") and k not in _TRANSPORT_KEYS]


if TYPE_CHECKING:  # generic in grpc's stubs only
    _Handler = grpc.GenericRpcHandler[bytes, bytes]
else:
    _Handler = grpc.GenericRpcHandler


class Forwarder(_Handler):
    """Passes on every call to a service outside `served` to the server at `target`."""

    def __init__(
        self,
        target: str,
        served: Iterable[str],
        channels: InternalChannels,
        options: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self._served = frozenset(served)
        self._channel = channels.open(target, list(options))
        self._handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {}

    def service(
        self, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method: str = details.method  # "/modelyard.v1.RegistryService/ListModels"
        if method.split("/")[1] in self._served:
            return None
        handler = self._handlers.get(method)
        if handler is None:
            handler = grpc.stream_stream_rpc_method_handler(self._forward(method))
            self._handlers[method] = handler
        return handler

    def _forward(
        self, method: str
    ) -> Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[bytes]]:
        multi = self._channel.stream_stream(method, None, None)  # bytes in, bytes out

        async def forward(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            remaining = context.time_remaining()
            call = multi(
                requests,
                metadata=forwardable(context.invocation_metadata() or ()),
                timeout=remaining if remaining is not None and remaining < 1e9 else None,
            )
            try:
                initial = await call.initial_metadata()
                if initial:
                    await context.send_initial_metadata(forwardable(initial))
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as exc:
                context.set_trailing_metadata(forwardable(exc.trailing_metadata() or ()))
                await context.abort(exc.code(), exc.details() or "")
            finally:
                call.cancel()  # a no-op once it ended; stops it when our caller left
            trailing = await call.trailing_metadata()
            if trailing:
                context.set_trailing_metadata(forwardable(trailing))

        return forward

    async def close(self) -> None:
        await self._channel.close(None)
