"""The trailing metadata of a failed gRPC call, typed as grpc.aio returns it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import grpc
from google.rpc import error_details_pb2, status_pb2

from modelyard_client.errors import STATUS_DETAILS_KEY


def trailers(err: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    """The call's trailers, one value per key."""
    # grpc-stubs give AioRpcError the sync RpcError's `tuple[_Metadatum, ...]`; grpc.aio
    # returns a grpc.aio.Metadata or None, which iterates as (key, value) pairs.
    metadata = cast("Iterable[tuple[str, str | bytes]] | None", err.trailing_metadata())
    return dict(metadata or ())


def retry_delay_s(err: grpc.aio.AioRpcError) -> float | None:
    """The ``google.rpc.RetryInfo`` delay the call's status details carry, or None."""
    raw = trailers(err).get(STATUS_DETAILS_KEY)
    if not isinstance(raw, bytes):
        return None
    for detail in status_pb2.Status.FromString(raw).details:
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(retry):
            return retry.retry_delay.ToNanoseconds() / 1e9
    return None
