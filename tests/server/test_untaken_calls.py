"""Calls that arrive while the server's event loop is busy all reach it; gRPC cancels none.

gRPC holds a call its server has not taken yet in a backlog, and by default
cancels new ones at random once that backlog passes 1,000 (certainly at
3,000): a bare CANCELLED, before any handler, interceptor or log sees it.
`start_server` raises that limit (`MAX_UNTAKEN_CALLS`) so that modelyard's
own bounds decide, with an answer that says why. Here the loop is blocked
while 2,500 calls arrive from another thread's client.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from modelyard.server.runtime import MAX_UNTAKEN_CALLS, RunningServer, ServiceBinding, start_server
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

CALLS = 2500


class Answering(gateway_pb2_grpc.GatewayServiceServicer):
    async def Generate(self, request: Any, context: Any) -> gateway_pb2.GenerateResponse:
        return gateway_pb2.GenerateResponse(text="ok")


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    servicer = Answering()  # type: ignore[abstract]  # Generate is the one RPC it answers
    binding = ServiceBinding(
        "modelyard.v1.GatewayService",
        lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, s),
    )
    running = await start_server([binding], "127.0.0.1:0")
    yield running
    await running.server.stop(0)


def _burst(address: str, sent: threading.Event, outcomes: Counter[str]) -> None:
    """From another thread: start every call at once, then wait for all of them."""
    with grpc.insecure_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        request = gateway_pb2.GenerateRequest(model="m")
        calls = [stub.Generate.future(request, timeout=60) for _ in range(CALLS)]
        sent.set()
        for call in calls:
            try:
                outcomes[call.result().text] += 1
            except grpc.RpcError as exc:
                outcomes[exc.code().name] += 1


async def test_calls_arriving_while_the_loop_is_busy_are_all_served(
    server: RunningServer,
) -> None:
    assert CALLS < MAX_UNTAKEN_CALLS
    outcomes: Counter[str] = Counter()
    sent = threading.Event()
    client = threading.Thread(target=_burst, args=(f"127.0.0.1:{server.port}", sent, outcomes))
    client.start()
    sent.wait(30)
    # Block the event loop on purpose: meanwhile the calls pile up in gRPC, untaken.
    time.sleep(1.5)  # noqa: ASYNC251
    await asyncio.to_thread(client.join)  # the loop serves them meanwhile
    assert outcomes == {"ok": CALLS}
