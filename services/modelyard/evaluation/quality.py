"""Storing an evaluated quality: the registry's `UpdateQuality`, over the process's internal
channel (its TLS and service key), opened at the first store and kept."""

from __future__ import annotations

import grpc

from modelyard.security.channels import InternalChannels
from modelyard.telemetry import metadata_with_trace
from modelyard_client.channel import CHANNEL_OPTIONS
from modelyard_client.errors import remote_errors
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

STORE_TIMEOUT_S = 10.0


class RegistryQuality:
    """`StoreQuality` to the registry at `address`."""

    def __init__(self, address: str, channels: InternalChannels) -> None:
        self._address = address
        self._channels = channels
        self._channel: grpc.aio.Channel | None = None
        self._stub: registry_pb2_grpc.RegistryServiceAsyncStub | None = None

    async def __call__(self, model_id: str, quality: common_pb2.ModelQuality) -> object:
        if self._stub is None:
            self._channel = self._channels.open(self._address, CHANNEL_OPTIONS)
            self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        with remote_errors():
            return await self._stub.UpdateQuality(
                registry_pb2.UpdateQualityRequest(id=model_id, quality=quality),
                metadata=metadata_with_trace(),
                timeout=STORE_TIMEOUT_S,
            )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = self._stub = None
