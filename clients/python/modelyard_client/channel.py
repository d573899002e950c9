"""How a client opens its channel to a modelyard server: plaintext, TLS or mTLS, with its key.

`blocking_channel` and `async_channel` are the one place (the `modelyard` command's
client commands and the server's own internal channels open theirs here too): TLS
when `ClientFiles` gives any file, read now, so a `ConfigError` names a missing or
broken one before any call; every call presents the API key as ``x-api-key`` unless
the call sets its own; catalog entries arrive whole (`CHANNEL_OPTIONS`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any, Final

import grpc

from modelyard_client.tls_files import ClientFiles

# The header the server reads a caller's key from first (``authorization: Bearer`` too).
API_KEY_HEADER: Final = "x-api-key"
# The registry server's message limit: whatever it sent (a `ListModels` of whole catalog
# entries), a client reads. The server's `modelyard.catalog_limits` states the same bound.
RECEIVE_BYTES: Final = 64 * 1024 * 1024
CHANNEL_OPTIONS: Final = (("grpc.max_receive_message_length", RECEIVE_BYTES),)

ChannelOptions = Sequence[tuple[str, Any]]


def blocking_channel(
    address: str,
    files: ClientFiles | None = None,
    options: ChannelOptions = CHANNEL_OPTIONS,
    api_key: str | None = None,
) -> grpc.Channel:
    """A blocking channel to `address` ("127.0.0.1:50051")."""
    if files is None or not files.given:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, files.credentials(), options=options)
    return grpc.intercept_channel(channel, _BlockingKey(api_key)) if api_key else channel


def async_channel(
    address: str,
    files: ClientFiles | None = None,
    options: ChannelOptions = CHANNEL_OPTIONS,
    api_key: str | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel to `address`; `credentials` already read stand for `files`."""
    if credentials is None and files is not None and files.given:
        credentials = files.credentials()
    keyed = api_key_interceptors(api_key) if api_key else None
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=keyed)
    return grpc.aio.secure_channel(address, credentials, options=options, interceptors=keyed)


def api_key_interceptors(key: str) -> list[Any]:
    """asyncio client interceptors that put `key` on every unary and server-streaming call."""
    return [_UnaryKey(key), _StreamKey(key)]


def _with_key(details: grpc.aio.ClientCallDetails, key: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()))
    if API_KEY_HEADER not in metadata:
        metadata.add(API_KEY_HEADER, key)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryKey(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_key(details, self._key), request)


class _StreamKey(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_key(details, self._key), request)


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """grpc.ClientCallDetails with its fields: the one way to change a blocking call's."""


class _BlockingKey(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[type-arg]  # generic only in grpc-stubs
    def __init__(self, key: str) -> None:
        self._key = key

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = list(details.metadata or ())
        if all(name != API_KEY_HEADER for name, _ in metadata):
            metadata.append((API_KEY_HEADER, self._key))
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)
