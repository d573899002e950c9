"""HotSwapService over the route table, the swaps and the A/B tests.

`GetRoute`, `ListRoutes` and `WatchRoutes` answer from `RouteTable`;
`Swap`, `GetSwap`, `WatchSwap`, `ListSwaps` (`swap_list.py`) and `Rollback`
from `Swaps`; the A/B test RPCs and `Feedback` from `ABTests`; `SetFallbacks`
from `fallbacks.py`.
`ReportOutcomes` hands each outcome to the split it belongs to: an A/B
test's or a canary swap's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc

from modelyard.hotswap.abtests import ABTests
from modelyard.hotswap.fallbacks import set_fallbacks
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.swap_list import listed
from modelyard.hotswap.swaps import ENDED, Catalog, Swaps
from modelyard_client.errors import InvalidRequest
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]
# A gateway sends at most 500 a batch; this bounds what one call can make the service do.
MAX_OUTCOMES = 10_000


class HotSwapServicer(hotswap_pb2_grpc.HotSwapServiceServicer):
    def __init__(self, routes: RouteTable, swaps: Swaps, tests: ABTests, catalog: Catalog) -> None:
        self._routes = routes
        self._swaps = swaps
        self._tests = tests
        self._catalog = catalog

    async def GetRoute(
        self, request: hotswap_pb2.GetRouteRequest, context: Ctx
    ) -> hotswap_pb2.Route:
        return self._routes.get(request.alias, request.task_type, request.for_model)

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

    async def ListSwaps(
        self, request: hotswap_pb2.ListSwapsRequest, context: Ctx
    ) -> hotswap_pb2.ListSwapsResponse:
        return hotswap_pb2.ListSwapsResponse(swaps=listed(self._swaps.every(), request, ENDED))

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

    async def StartABTest(
        self, request: hotswap_pb2.StartABTestRequest, context: Ctx
    ) -> hotswap_pb2.ABTest:
        return self._tests.start(request)

    async def GetABTest(
        self, request: hotswap_pb2.GetABTestRequest, context: Ctx
    ) -> hotswap_pb2.ABTest:
        return self._tests.get(request.id)

    async def StopABTest(
        self, request: hotswap_pb2.StopABTestRequest, context: Ctx
    ) -> hotswap_pb2.ABTest:
        return await self._tests.stop(request)

    async def ListABTests(
        self, request: hotswap_pb2.ListABTestsRequest, context: Ctx
    ) -> hotswap_pb2.ListABTestsResponse:
        return hotswap_pb2.ListABTestsResponse(tests=self._tests.list())

    async def Feedback(
        self, request: hotswap_pb2.FeedbackRequest, context: Ctx
    ) -> hotswap_pb2.FeedbackResponse:
        return await self._tests.feedback(request)

    async def ReportOutcomes(
        self, request: hotswap_pb2.OutcomeBatch, context: Ctx
    ) -> hotswap_pb2.ReportOutcomesResponse:
        if len(request.outcomes) > MAX_OUTCOMES:
            raise InvalidRequest(
                f"a batch holds at most {MAX_OUTCOMES} outcomes, not {len(request.outcomes)}",
                field="outcomes",
            )
        accepted = sum(
            1 for o in request.outcomes if self._tests.record(o) or self._swaps.record(o)
        )
        self._tests.flush()
        return hotswap_pb2.ReportOutcomesResponse(accepted=accepted)

    async def SetFallbacks(
        self, request: hotswap_pb2.SetFallbacksRequest, context: Ctx
    ) -> hotswap_pb2.Route:
        return set_fallbacks(self._routes, self._catalog, request)
