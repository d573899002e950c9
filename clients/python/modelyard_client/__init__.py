"""The Python client of the modelyard gateway, and the contract it speaks.

This package owns what server and clients share: the gRPC stubs generated from
``proto/modelyard/v1`` (`modelyard_client.v1`) and the one error hierarchy with its
wire form (`modelyard_client.errors`). It needs nothing of the server: grpcio,
protobuf and Google's ``google.rpc`` protos. The server depends on it.

A failed call raises the exact class the server raised, with its attributes
(`ModelNotFound.model_id`, `RateLimited.retry_after_s`, `InvalidRequest.field`,
`AllModelsFailed.attempts`, ...), rebuilt from the status details.
"""

from __future__ import annotations

from modelyard_client.aio import AsyncGatewayClient
from modelyard_client.errors import ModelyardError
from modelyard_client.gateway_client import GatewayClient

__all__ = ["AsyncGatewayClient", "GatewayClient", "ModelyardError"]
