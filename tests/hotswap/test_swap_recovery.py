"""A hot-swap service stopped mid-swap comes back with each route on one model, each swap ended.

`Swaps` over a real route table in SQLite, a catalog of two models and a
validator the test holds: the service is "stopped" (its swaps closed, its
store closed) at each phase, and a new one opened on the same file.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path

import pytest
from hotswap.swap_fakes import SmallCatalog

from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Swaps, SwapSettings
from modelyard_client.errors import FailedPrecondition
from modelyard_client.v1 import common_pb2, hotswap_pb2

Status = hotswap_pb2.SwapStatus
A, B = "local/a", "local/b"


class HeldValidator:
    """Answers once `release` is set; counts the prompts it was asked."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.asked = 0

    async def answer(self, model: common_pb2.ModelEntry, prompt: str, timeout_s: float) -> None:
        self.asked += 1
        await self.release.wait()


def _open(path: Path, validator: HeldValidator, grace_s: float = 60.0) -> tuple[RouteTable, Swaps]:
    routes = RouteTable(HotSwapStore(path))
    routes.seed({"chat": A}, {})
    settings = SwapSettings(grace_period_s=grace_s, validation_timeout_s=5.0)
    return routes, Swaps(routes, routes.store, SmallCatalog(A, B), validator, settings)


async def _until(swaps: Swaps, swap_id: str, phase: int) -> None:
    async with asyncio.timeout(5), aclosing(swaps.watch(swap_id)) as statuses:
        async for status in statuses:
            if status.phase == phase:
                return


async def _stop(routes: RouteTable, swaps: Swaps) -> None:
    await swaps.close()
    routes.close()


async def test_stopped_before_the_switch_the_swap_is_failed_and_the_route_unmoved(
    tmp_path: Path,
) -> None:
    held = HeldValidator()
    routes, swaps = _open(tmp_path / "h.sqlite3", held)
    started = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    await _until(swaps, started.swap_id, Status.PHASE_WARMING)
    await _stop(routes, swaps)

    routes, swaps = _open(tmp_path / "h.sqlite3", HeldValidator())
    after = swaps.get(started.swap_id)
    assert after.phase == Status.PHASE_FAILED
    assert after.error == ("the hot-swap service stopped during warming; the route was not changed")
    assert after.finished_at.seconds > 0
    assert routes.get("chat").model_id == A
    # The alias is free again: a new swap may start on it.
    assert swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B)).phase == (
        Status.PHASE_PREPARING
    )
    await _stop(routes, swaps)


async def test_stopped_while_draining_the_swap_is_done_and_the_route_on_the_target(
    tmp_path: Path,
) -> None:
    held = HeldValidator()
    held.release.set()
    routes, swaps = _open(tmp_path / "h.sqlite3", held)
    started = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    await _until(swaps, started.swap_id, Status.PHASE_DRAINING)
    assert routes.get("chat").model_id == B
    await _stop(routes, swaps)

    routes, swaps = _open(tmp_path / "h.sqlite3", HeldValidator())
    after = swaps.get(started.swap_id)
    assert after.phase == Status.PHASE_DONE
    assert after.error == (
        "the hot-swap service restarted while draining; the route stays on the target"
    )
    assert routes.get("chat").model_id == B
    # Done, not gone: it can still be rolled back.
    rolled = await swaps.rollback(started.swap_id)
    assert rolled.phase == Status.PHASE_ROLLED_BACK
    assert routes.get("chat").model_id == A
    await _stop(routes, swaps)


async def test_a_rollback_before_the_switch_stops_the_swap_and_leaves_the_route(
    tmp_path: Path,
) -> None:
    held = HeldValidator()
    routes, swaps = _open(tmp_path / "h.sqlite3", held)
    started = swaps.start(
        hotswap_pb2.SwapRequest(alias="chat", target_model_id=B, validation_prompts=["a", "b"])
    )
    await _until(swaps, started.swap_id, Status.PHASE_WARMING)
    rolled = await swaps.rollback(started.swap_id)
    assert (rolled.phase, rolled.error) == (
        Status.PHASE_ROLLED_BACK,
        "stopped before the switch: the route is unchanged",
    )
    assert routes.get("chat").model_id == A
    assert routes.revision == 1  # nothing was written to the route
    held.release.set()
    await asyncio.sleep(0.05)
    assert held.asked == 1  # the stopped swap asked nothing more
    await _stop(routes, swaps)


async def test_a_rollback_after_a_later_swap_is_refused(tmp_path: Path) -> None:
    held = HeldValidator()
    held.release.set()
    routes, swaps = _open(tmp_path / "h.sqlite3", held, grace_s=0.01)
    first = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    await _until(swaps, first.swap_id, Status.PHASE_DONE)
    second = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=A))
    await _until(swaps, second.swap_id, Status.PHASE_DONE)
    with pytest.raises(FailedPrecondition) as info:
        await swaps.rollback(first.swap_id)
    assert info.value.message == (
        f"alias 'chat' has moved on since swap {first.swap_id} (it is served by '{A}'): "
        "roll back the later swap instead"
    )
    await _stop(routes, swaps)


async def test_each_phase_is_stored_and_watched_in_order(tmp_path: Path) -> None:
    held = HeldValidator()
    routes, swaps = _open(tmp_path / "h.sqlite3", held, grace_s=0.01)
    started = swaps.start(
        hotswap_pb2.SwapRequest(alias="chat", target_model_id=B, validation_prompts=["a", "b"])
    )
    watch = swaps.watch(started.swap_id)
    seen = [await anext(watch)]
    held.release.set()
    seen += [status async for status in watch]
    assert [s.phase for s in seen] == [
        Status.PHASE_PREPARING,
        Status.PHASE_WARMING,
        Status.PHASE_VALIDATING,
        Status.PHASE_SWITCHED,
        Status.PHASE_DRAINING,
        Status.PHASE_DONE,
    ]
    assert held.asked == 2
    assert seen[2].warm_ms > 0
    stored = list(routes.store.load_swaps())
    assert [s.phase for s in stored] == [Status.PHASE_DONE]
    await _stop(routes, swaps)


async def test_stopping_the_service_ends_the_watches_of_running_swaps(tmp_path: Path) -> None:
    held = HeldValidator()
    routes, swaps = _open(tmp_path / "h.sqlite3", held)
    started = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    watch = swaps.watch(started.swap_id)
    assert (await anext(watch)).phase == Status.PHASE_PREPARING
    assert (await anext(watch)).phase == Status.PHASE_WARMING  # held there
    await swaps.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(watch), timeout=5)
    routes.close()
