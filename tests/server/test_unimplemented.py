"""An RPC of the contract a servicer does not define answers UNIMPLEMENTED, naming it.

Every RPC of today's services is built, so the servicer here is one that
defines none: the rule stays for the next RPC a contract gains.
"""

from __future__ import annotations

import grpc
import pytest

from modelyard.server.runtime import bind, start_server
from modelyard.server.unimplemented import with_unimplemented
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc


class NothingBuilt(hotswap_pb2_grpc.HotSwapServiceServicer):
    pass


async def test_an_rpc_not_built_answers_unimplemented_naming_the_rpc() -> None:
    server = await start_server([bind(with_unimplemented(NothingBuilt))], "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as unbuilt:
                await hotswap_pb2_grpc.HotSwapServiceStub(channel).StartABTest(
                    hotswap_pb2.StartABTestRequest()
                )
    finally:
        await server.drain(1.0)
    assert unbuilt.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert unbuilt.value.details() == (
        "modelyard.v1.HotSwapService/StartABTest is not implemented yet"
    )
