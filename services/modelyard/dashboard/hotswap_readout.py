"""The swaps running and the A/B tests, as the dashboard reads them from the hot-swap service.

In one process with the service (`modelyard up`) its objects are read directly: every
swap not ended, every test with its confidence as `GetABTest` answers it. A gateway
whose routes come from a hot-swap service elsewhere asks it over gRPC: `ListABTests`
for the tests, `ListSwaps` for the swaps not ended.
"""

from __future__ import annotations

from typing import Protocol

from modelyard.hotswap.abtests import ABTests
from modelyard.hotswap.swap_list import MAX_LIMIT
from modelyard.hotswap.swaps import Swaps
from modelyard.security.channels import PLAINTEXT, InternalChannels
from modelyard.telemetry import metadata_with_trace
from modelyard_client.channel import CHANNEL_OPTIONS
from modelyard_client.errors import remote_errors
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc

READ_TIMEOUT_S = 5.0  # one read of the remote service


class HotSwapReadout(Protocol):
    """Where the dashboard reads swaps and A/B tests from."""

    async def running_swaps(self) -> list[hotswap_pb2.SwapStatus]:
        """The swaps that have not ended."""
        ...

    async def ab_tests(self) -> list[hotswap_pb2.ABTest]:
        """Every A/B test the service holds, running or ended, oldest first."""
        ...


class LocalHotSwap:
    """The hot-swap service of this process."""

    def __init__(self, swaps: Swaps, tests: ABTests) -> None:
        self.swaps = swaps
        self.tests = tests

    async def running_swaps(self) -> list[hotswap_pb2.SwapStatus]:
        return self.swaps.running()

    async def ab_tests(self) -> list[hotswap_pb2.ABTest]:
        return self.tests.list()


class RemoteHotSwap:
    """The hot-swap service at `address`, over the internal channels (the service key)."""

    def __init__(self, address: str, channels: InternalChannels = PLAINTEXT) -> None:
        self.address = address
        self.channels = channels

    async def running_swaps(self) -> list[hotswap_pb2.SwapStatus]:
        async with self.channels.open(self.address, CHANNEL_OPTIONS) as channel:
            stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
            with remote_errors():
                listed = await stub.ListSwaps(
                    hotswap_pb2.ListSwapsRequest(running_only=True, limit=MAX_LIMIT),
                    metadata=metadata_with_trace(),
                    timeout=READ_TIMEOUT_S,
                )
        return list(listed.swaps)

    async def ab_tests(self) -> list[hotswap_pb2.ABTest]:
        async with self.channels.open(self.address, CHANNEL_OPTIONS) as channel:
            stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
            with remote_errors():
                listed = await stub.ListABTests(
                    hotswap_pb2.ListABTestsRequest(),
                    metadata=metadata_with_trace(),
                    timeout=READ_TIMEOUT_S,
                )
        return list(listed.tests)
