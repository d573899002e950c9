"""A/B tests at the points the third run left open (docs/testing.md): the whole refusal of
promoting a running test with no winner, and ListABTests answering over gRPC with every
test. `ABTests` over a real route table and SQLite store; the servicer on a real
in-process gRPC server on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from hotswap.swap_fakes import InstantAnswers, SmallCatalog

from modelyard.hotswap.abtests import ABTests
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.servicer import HotSwapServicer
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Swaps, SwapSettings
from modelyard_client.errors import FailedPrecondition
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc

A, B = "up/a", "up/b"


class Lab:
    def __init__(self, path: Path) -> None:
        self.catalog = SmallCatalog(A, B)
        self.routes = RouteTable(HotSwapStore(path))
        self.routes.seed({"chat": A}, {})
        self.swaps = Swaps(
            self.routes, self.routes.store, self.catalog, InstantAnswers(), SwapSettings()
        )
        self.tests = ABTests(self.routes, self.routes.store, self.catalog, self.swaps)

    def start(self) -> hotswap_pb2.ABTest:
        return self.tests.start(
            hotswap_pb2.StartABTestRequest(
                alias="chat",
                arms=[
                    hotswap_pb2.ABArm(name="a", model_id=A, weight=0.5),
                    hotswap_pb2.ABArm(name="b", model_id=B, weight=0.5),
                ],
            )
        )

    async def close(self) -> None:
        await self.tests.close()
        await self.swaps.close()
        self.routes.close()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    lab = Lab(tmp_path / "hotswap.sqlite3")
    yield lab
    await lab.close()


async def test_promoting_a_running_test_with_no_winner_is_refused_whole_and_it_runs_on(
    lab: Lab,
) -> None:
    test = lab.start()
    with pytest.raises(FailedPrecondition) as refused:
        await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=test.id, promote_winner=True))
    assert refused.value.message == (
        f"A/B test {test.id} has no winner yet, so there is none to promote; "
        "stop it without promote_winner, or let it run"
    )
    assert lab.tests.get(test.id).running


async def test_list_ab_tests_answers_every_test_over_grpc(lab: Lab) -> None:
    ended = lab.start()
    await lab.tests.stop(hotswap_pb2.StopABTestRequest(id=ended.id))
    running = lab.start()
    server = grpc.aio.server()
    hotswap_pb2_grpc.add_HotSwapServiceServicer_to_server(
        HotSwapServicer(lab.routes, lab.swaps, lab.tests, lab.catalog), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
            listed = await stub.ListABTests(hotswap_pb2.ListABTestsRequest(), timeout=10)
    finally:
        await server.stop(0)
    assert [(t.id, t.running) for t in listed.tests] == [(ended.id, False), (running.id, True)]
