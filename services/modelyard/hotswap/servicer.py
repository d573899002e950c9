"""HotSwapService: the contract is in place, the swap engine is not built yet."""

from __future__ import annotations

from modelyard.v1 import hotswap_pb2_grpc


class HotSwapServicer(hotswap_pb2_grpc.HotSwapServiceServicer):
    """Every RPC answers UNIMPLEMENTED naming itself until the hot-swap engine lands."""
