"""SelectorService over the `Selector` domain."""

from __future__ import annotations

from typing import Any

import grpc

from modelyard.selector.selection import Selector
from modelyard_client.v1 import selector_pb2, selector_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class SelectorServicer(selector_pb2_grpc.SelectorServiceServicer):
    def __init__(self, selector: Selector) -> None:
        self._selector = selector

    async def Select(
        self, request: selector_pb2.SelectRequest, context: Ctx
    ) -> selector_pb2.SelectResponse:
        return self._selector.select(request)
