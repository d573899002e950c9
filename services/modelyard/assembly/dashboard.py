"""The dashboard's reading, wired to one stack's components (`modelyard.dashboard`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.dashboard.data import DashboardSources, dashboard_data
from modelyard.dashboard.hotswap_readout import HotSwapReadout, LocalHotSwap, RemoteHotSwap
from modelyard.edges.dashboard import Reading
from modelyard.gateway.core import GatewayCore
from modelyard.security.channels import InternalChannels

if TYPE_CHECKING:
    from modelyard.assembly.stack import Stack


def dashboard_reading(
    stack: Stack, core: GatewayCore, hotswap_address: str | None, channels: InternalChannels
) -> Reading:
    """What ``GET /dashboard/data`` answers: the gateway's views of `stack`, read at each
    call (its alerts and health checks start once the catalog synced), and the swaps and
    A/B tests of the hot-swap service in this process, or else at `hotswap_address`."""
    hotswap: HotSwapReadout | None = None
    if stack.swaps is not None and stack.tests is not None:
        hotswap = LocalHotSwap(stack.swaps, stack.tests)
    elif hotswap_address:
        hotswap = RemoteHotSwap(hotswap_address, channels)

    async def read() -> dict[str, Any]:
        sources = DashboardSources(
            core.catalog,
            core.performance,
            stack.route_view,
            hotswap,
            stack.alerts,
            stack.health,
        )
        return await dashboard_data(sources)

    return read
