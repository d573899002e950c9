"""HotSwapService over the route table and the swaps; A/B tests are not built yet.

`GetRoute`, `ListRoutes` and `WatchRoutes` answer from `RouteTable`;
`Swap`, `GetSwap`, `WatchSwap` and `Rollback` from `Swaps`. The A/B test RPCs
are left to the generated base class, so they answer UNIMPLEMENTED naming
themselves (`with_unimplemented`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc

from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.swaps import Swaps
from modelyard.v1 import hotswap_pb2, hotswap_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class HotSwapServicer(hotswap_pb2_grpc.HotSwapServiceServicer):
    def __init__(self, routes: RouteTable, swaps: Swaps) -> None:
        self._routes = routes
        self._swaps = swaps

    async def GetRoute(
        self, request: hotswap_pb2.GetRouteRequest, context: Ctx
    ) -> hotswap_pb2.Route:
        return self._routes.get(request.alias, request.task_type)

    async def ListRoutes(
        self, request: hotswap_pb2.ListRoutesRequest, context: Ctx
    ) -> hotswap_pb2.ListRoutesResponse:
        return hotswap_pb2.ListRoutesResponse(routes=self._routes.routes())

    async def WatchRoutes(
        self, request: hotswap_pb2.WatchRoutesRequest, context: Ctx
    ) -> AsyncIterator[hotswap_pb2.RouteChange]:
        watch = self._routes.watch(request.after_revision, request.table_id)
        async with aclosing(watch) as changes:
            async for change in changes:
                yield change

    async def Swap(self, request: hotswap_pb2.SwapRequest, context: Ctx) -> hotswap_pb2.SwapStatus:
        return self._swaps.start(request)

    async def GetSwap(
        self, request: hotswap_pb2.GetSwapRequest, context: Ctx
    ) -> hotswap_pb2.SwapStatus:
        return self._swaps.get(request.swap_id)

    async def WatchSwap(
        self, request: hotswap_pb2.GetSwapRequest, context: Ctx
    ) -> AsyncIterator[hotswap_pb2.SwapStatus]:
        watch = self._swaps.watch(request.swap_id)
        async with aclosing(watch) as statuses:
            async for status in statuses:
                yield status

    async def Rollback(
        self, request: hotswap_pb2.RollbackRequest, context: Ctx
    ) -> hotswap_pb2.SwapStatus:
        return await self._swaps.rollback(request.swap_id)
