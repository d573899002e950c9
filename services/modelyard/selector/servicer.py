"""SelectorService over the `Selector` domain."""

from __future__ import annotations

from typing import Any

import grpc

from modelyard.selector.selection import Selector
from modelyard.server.runtime import ServiceBinding
from modelyard.server.unimplemented import with_unimplemented
from modelyard.v1 import selector_pb2, selector_pb2_grpc

Ctx = grpc.aio.ServicerContext[Any, Any]


class SelectorServicer(selector_pb2_grpc.SelectorServiceServicer):
    def __init__(self, selector: Selector) -> None:
        self._selector = selector

    async def Select(
        self, request: selector_pb2.SelectRequest, context: Ctx
    ) -> selector_pb2.SelectResponse:
        return self._selector.select(request)


def selector_binding(selector: Selector) -> ServiceBinding:
    servicer = with_unimplemented(SelectorServicer, selector)
    return ServiceBinding(
        name=selector_pb2.DESCRIPTOR.services_by_name["SelectorService"].full_name,
        register=lambda server: selector_pb2_grpc.add_SelectorServiceServicer_to_server(
            servicer, server
        ),
    )
