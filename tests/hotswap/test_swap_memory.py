"""Swaps and the local backends' memory budget: refuse, or drain first; unload or keep warm.

`Swaps` over a real route table; the loader stands for the backends, refusing
to hold both versions the way a local backend's budget does
(`MemoryBudgetExceeded`). The real llama.cpp case is in test_swap_local_models.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import aclosing
from pathlib import Path

from hotswap.swap_fakes import SmallCatalog

from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Swaps, SwapSettings
from modelyard_client.errors import MemoryBudgetExceeded, StreamTruncated
from modelyard_client.v1 import common_pb2, hotswap_pb2

Status = hotswap_pb2.SwapStatus
A, B = "local/a", "local/b"


class OneModelBudget:
    """Holds one model: loading one beside another is refused; records every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def prepare(self, model: common_pb2.ModelEntry, keep_loaded: Sequence[str]) -> None:
        self.calls.append(f"prepare {model.id} beside {','.join(keep_loaded)}")
        if keep_loaded:
            raise MemoryBudgetExceeded(
                model.id, {model.id: 300, **dict.fromkeys(keep_loaded, 300)}, 400, 2
            )

    async def release(self, model: common_pb2.ModelEntry) -> None:
        self.calls.append(f"release {model.id}")


class Answers:
    """Answers every prompt, or fails them when `fail` is set; waits for `release` first."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()
        self.route_when_asked: list[str] = []
        self.asked = asyncio.Event()
        self.routes: RouteTable | None = None

    async def answer(self, model: common_pb2.ModelEntry, prompt: str, timeout_s: float) -> None:
        if self.routes is not None:
            self.route_when_asked.append(self.routes.get("chat").model_id)
        self.asked.set()
        await self.release.wait()
        if self.fail:
            raise StreamTruncated(f"'{model.id}' ended its answer without a finish reason")


def _open(
    path: Path, answers: Answers, loader: OneModelBudget, **settings: str
) -> tuple[RouteTable, Swaps]:
    routes = RouteTable(HotSwapStore(path))
    routes.seed({"chat": A}, {})
    answers.routes = routes
    swaps = Swaps(
        routes,
        routes.store,
        SmallCatalog(A, B),
        answers,
        SwapSettings(grace_period_s=0.0, **settings),  # type: ignore[arg-type]
        loader=loader,
    )
    return routes, swaps


async def _ended(swaps: Swaps, swap_id: str) -> Status:
    async with asyncio.timeout(5), aclosing(swaps.watch(swap_id)) as statuses:
        async for status in statuses:
            last = status
    return last


async def test_a_budget_short_swap_is_refused_before_the_switch(tmp_path: Path) -> None:
    loader = OneModelBudget()
    routes, swaps = _open(tmp_path / "h.sqlite3", Answers(), loader)
    swap = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    ended = await _ended(swaps, swap.swap_id)
    assert ended.phase == Status.PHASE_FAILED
    assert ended.error == (
        "preparing: local/b (300 MiB) cannot load beside local/a (300 MiB): together 600 MiB, "
        "over the memory budget of 400 MiB (hot_swap.when_budget_short: refuse; drain_first "
        "would switch first and load the target once the current version drains)"
    )
    assert routes.get("chat").model_id == A
    assert loader.calls == ["prepare local/b beside local/a"]
    await swaps.close()
    routes.close()


async def test_drain_first_switches_then_validates_the_target(tmp_path: Path) -> None:
    loader, answers = OneModelBudget(), Answers()
    routes, swaps = _open(tmp_path / "h.sqlite3", answers, loader, when_budget_short="drain_first")
    swap = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    ended = await _ended(swaps, swap.swap_id)
    assert (ended.phase, ended.error, ended.switched_first) == (Status.PHASE_DONE, "", True)
    assert answers.route_when_asked == [B]  # validated after the route moved
    assert routes.get("chat").model_id == B
    await swaps.close()
    routes.close()


async def test_drain_first_switches_back_when_the_target_fails_validation(tmp_path: Path) -> None:
    loader, answers = OneModelBudget(), Answers(fail=True)
    routes, swaps = _open(tmp_path / "h.sqlite3", answers, loader, when_budget_short="drain_first")
    swap = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    ended = await _ended(swaps, swap.swap_id)
    assert ended.phase == Status.PHASE_ROLLED_BACK
    assert ended.error == (
        "warming after a drain-first switch: 'local/b' ended its answer without a finish "
        "reason; 'local/a' serves alias 'chat' again"
    )
    assert routes.get("chat").model_id == A
    await swaps.close()
    routes.close()


async def test_a_restart_mid_drain_first_validation_puts_the_previous_model_back(
    tmp_path: Path,
) -> None:
    loader, answers = OneModelBudget(), Answers()
    answers.release.clear()
    routes, swaps = _open(tmp_path / "h.sqlite3", answers, loader, when_budget_short="drain_first")
    swap = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    async with asyncio.timeout(5):
        await answers.asked.wait()
    assert routes.get("chat").model_id == B
    await swaps.close()
    routes.close()

    routes, swaps = _open(tmp_path / "h.sqlite3", Answers(), OneModelBudget())
    after = swaps.get(swap.swap_id)
    assert after.phase == Status.PHASE_ROLLED_BACK
    assert after.error == (
        "the hot-swap service restarted during warming, after a drain-first switch; "
        "'local/a' serves alias 'chat' again"
    )
    assert routes.get("chat").model_id == A
    await swaps.close()
    routes.close()


async def test_a_canary_swap_needs_both_versions_loaded(tmp_path: Path) -> None:
    loader = OneModelBudget()
    routes, swaps = _open(
        tmp_path / "h.sqlite3", Answers(), loader, when_budget_short="drain_first"
    )
    swap = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B, canary=True))
    ended = await _ended(swaps, swap.swap_id)
    assert ended.phase == Status.PHASE_FAILED
    assert ended.error.endswith("; a canary swap serves both versions at once")
    assert routes.get("chat").model_id == A
    await swaps.close()
    routes.close()


class RoomForBoth(OneModelBudget):
    async def prepare(self, model: common_pb2.ModelEntry, keep_loaded: Sequence[str]) -> None:
        self.calls.append(f"prepare {model.id} beside {','.join(keep_loaded)}")


async def test_standby_unload_releases_the_previous_version_once_drained(tmp_path: Path) -> None:
    loader = RoomForBoth()
    routes, swaps = _open(tmp_path / "h.sqlite3", Answers(), loader, standby="unload")
    swap = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    assert (await _ended(swaps, swap.swap_id)).phase == Status.PHASE_DONE
    assert loader.calls == ["prepare local/b beside local/a", "release local/a"]
    await swaps.close()
    routes.close()


async def test_standby_keep_warm_leaves_the_previous_version_loaded(tmp_path: Path) -> None:
    loader = RoomForBoth()
    routes, swaps = _open(tmp_path / "h.sqlite3", Answers(), loader)
    swap = swaps.start(hotswap_pb2.SwapRequest(alias="chat", target_model_id=B))
    assert (await _ended(swaps, swap.swap_id)).phase == Status.PHASE_DONE
    assert loader.calls == ["prepare local/b beside local/a"]
    await swaps.close()
    routes.close()
