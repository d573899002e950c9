"""SelectorService: contract only so far; every RPC answers UNIMPLEMENTED naming itself."""

from __future__ import annotations

from modelyard.server.runtime import ServiceBinding
from modelyard.server.unimplemented import with_unimplemented
from modelyard.v1 import selector_pb2, selector_pb2_grpc


def selector_binding() -> ServiceBinding:
    servicer = with_unimplemented(selector_pb2_grpc.SelectorServiceServicer)
    return ServiceBinding(
        name=selector_pb2.DESCRIPTOR.services_by_name["SelectorService"].full_name,
        register=lambda server: selector_pb2_grpc.add_SelectorServiceServicer_to_server(
            servicer, server
        ),
    )
