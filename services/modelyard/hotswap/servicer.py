"""HotSwapService over the route table; swaps and A/B tests are not built yet.

`GetRoute`, `ListRoutes` and `WatchRoutes` answer from `RouteTable`. `Swap`,
`GetSwap`, `Rollback` and the A/B test RPCs are left to the generated base
class, so they answer UNIMPLEMENTED naming themselves (`with_unimplemented`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc

from modelyard.hotswap.routes import RouteTable
from modelyard.v1 import hotswap_pb2, hotswap_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class HotSwapServicer(hotswap_pb2_grpc.HotSwapServiceServicer):
    def __init__(self, routes: RouteTable) -> None:
        self._routes = routes

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
