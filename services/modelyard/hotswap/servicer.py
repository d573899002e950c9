"""HotSwapService: contract only so far; every RPC answers UNIMPLEMENTED naming itself."""

from __future__ import annotations

from modelyard.server.runtime import ServiceBinding
from modelyard.server.unimplemented import with_unimplemented
from modelyard.v1 import hotswap_pb2, hotswap_pb2_grpc


def hotswap_binding() -> ServiceBinding:
    servicer = with_unimplemented(hotswap_pb2_grpc.HotSwapServiceServicer)
    return ServiceBinding(
        name=hotswap_pb2.DESCRIPTOR.services_by_name["HotSwapService"].full_name,
        register=lambda server: hotswap_pb2_grpc.add_HotSwapServiceServicer_to_server(
            servicer, server
        ),
    )
