"""The service key on internal calls: what one modelyard service presents to another.

With keys required, each call on an internal channel (`channels.InternalChannels`,
the one place such channels are opened) carries the service key (BACKEND scope)
as ``x-api-key``, unless the call sets its own.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import grpc

# The header `modelyard.ratelimit.caller.api_key_from_metadata` reads first (not imported
# from there: ratelimit reads the principal, so security must not import ratelimit; a
# test holds the two equal).
API_KEY_HEADER = "x-api-key"


def service_key_interceptors(key: str) -> list[Any]:
    """Client interceptors that put `key` on every unary and server-streaming call."""
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


def with_api_key(channel: grpc.Channel, key: str) -> grpc.Channel:
    """A blocking `channel` whose every call presents `key` as ``x-api-key`` (the CLI's and
    `modelyard_client`'s calls), unless the call sets its own."""
    return grpc.intercept_channel(channel, _BlockingKey(key))


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
