"""The trailing metadata of a failed gRPC call, typed as grpc.aio returns it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import grpc


def trailers(err: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    """The call's trailers, one value per key."""
    # grpc-stubs give AioRpcError the sync RpcError's `tuple[_Metadatum, ...]`; grpc.aio
    # returns a grpc.aio.Metadata or None, which iterates as (key, value) pairs.
    metadata = cast("Iterable[tuple[str, str | bytes]] | None", err.trailing_metadata())
    return dict(metadata or ())
