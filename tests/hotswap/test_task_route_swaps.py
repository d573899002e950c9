"""A task type's route swaps like an alias's: validated, switched, rolled back."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import pytest
from hotswap.swap_fakes import InstantAnswers, SmallCatalog

from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Swaps, SwapSettings
from modelyard_client.errors import FailedPrecondition, InvalidRequest
from modelyard_client.v1 import common_pb2, hotswap_pb2, selector_pb2

Status = hotswap_pb2.SwapStatus
A, B = "up/a", "up/b"
CODE, CHAT = selector_pb2.TASK_TYPE_CODE, selector_pb2.TASK_TYPE_CHAT


async def test_a_task_type_route_swaps_and_rolls_back(tmp_path: Path) -> None:
    routes = RouteTable(HotSwapStore(tmp_path / "h.sqlite3"))
    routes.seed({}, {CODE: A})
    swaps = Swaps(
        routes,
        routes.store,
        SmallCatalog(A, B, capabilities=[common_pb2.CAPABILITY_CODE]),
        InstantAnswers(),
        SwapSettings(grace_period_s=0),
    )
    swap = swaps.start(hotswap_pb2.SwapRequest(task_type=CODE, target_model_id=B))
    assert (swap.alias, swap.task_type, swap.from_model_id) == ("", CODE, A)
    with pytest.raises(FailedPrecondition, match=f"task type code has swap {swap.swap_id}"):
        swaps.start(hotswap_pb2.SwapRequest(task_type=CODE, target_model_id=A))
    async with asyncio.timeout(5), aclosing(swaps.watch(swap.swap_id)) as statuses:
        async for status in statuses:
            last = status
    assert last.phase == Status.PHASE_DONE
    assert routes.get(task_type=CODE).model_id == B
    rolled = await swaps.rollback(swap.swap_id)
    assert rolled.error == "'up/a' serves task type code again"
    assert routes.get(task_type=CODE).model_id == A

    with pytest.raises(FailedPrecondition, match="task type chat has no route: a task type's"):
        swaps.start(hotswap_pb2.SwapRequest(task_type=CHAT, target_model_id=B))
    with pytest.raises(InvalidRequest, match="a route is for an alias or a task type, not both"):
        swaps.start(hotswap_pb2.SwapRequest(alias="x", task_type=CODE, target_model_id=B))
    await swaps.close()
    routes.close()
