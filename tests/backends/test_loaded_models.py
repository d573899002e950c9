"""`LoadedModels`: the budget, leases, one load per model, eviction, idle unload, preload."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from modelyard.backends.loaded_models import MIB, LoadedModels
from modelyard_client.errors import MemoryBudgetExceeded, ModelNotFound


class FakeModels:
    """A `ModelOpener` over sizes in MiB; it records every open and close in `events`."""

    def __init__(self, **sizes_mb: int) -> None:
        self.sizes = {f"local/{m}": mb * MIB for m, mb in sizes_mb.items()}
        self.events: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}  # an open waits for its gate
        self.failing: set[str] = set()
        self.open_s = 0.0
        self.closed = asyncio.Event()  # set by every close

    def size_bytes(self, model_id: str) -> int:
        if model_id not in self.sizes:
            raise ModelNotFound(model_id, "the fake backend")
        return self.sizes[model_id]

    async def open(self, model_id: str) -> str:
        self.events.append(f"open {model_id}")
        gate = self.gates.get(model_id)
        if gate is not None:
            await gate.wait()
        if self.open_s:
            await asyncio.sleep(self.open_s)
        if model_id in self.failing:
            raise OSError(f"cannot read {model_id}")
        return f"model {model_id}"

    async def close(self, model_id: str, model: str) -> None:
        assert model == f"model {model_id}"
        self.events.append(f"close {model_id}")
        self.closed.set()

    def closes(self) -> list[str]:
        return [e.split()[1] for e in self.events if e.startswith("close")]

    def opens(self) -> list[str]:
        return [e.split()[1] for e in self.events if e.startswith("open")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cache(
    models: FakeModels,
    *,
    budget_mb: int = 1000,
    max_loaded: int = 10,
    idle_timeout_s: float = 0.0,
    on_loaded: Callable[[str, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> LoadedModels[str]:
    return LoadedModels(
        models,
        budget_bytes=budget_mb * MIB,
        max_loaded=max_loaded,
        idle_timeout_s=idle_timeout_s,
        on_loaded=on_loaded,
        clock=clock,
    )


async def settle() -> None:
    """Let every task that can run, run (no timer involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_least_recently_used_model_is_evicted_first() -> None:
    models = FakeModels(a=1, b=1, c=1, d=1)
    loaded = cache(models, budget_mb=3)
    for m in ("a", "b", "c"):
        await loaded.load(f"local/{m}")
    async with loaded.lease("local/a"):  # a is now the most recent
        pass
    await loaded.load("local/d")
    assert models.closes() == ["local/b"]
    assert loaded.loaded() == ["local/c", "local/a", "local/d"]
    assert loaded.used_bytes() == 3 * MIB


async def test_max_loaded_caps_the_count_within_a_roomy_budget() -> None:
    models = FakeModels(a=1, b=1, c=1)
    loaded = cache(models, max_loaded=2)
    for m in ("a", "b", "c"):
        await loaded.load(f"local/{m}")
    assert models.closes() == ["local/a"]
    assert loaded.loaded() == ["local/b", "local/c"]


async def test_concurrent_requests_for_an_unloaded_model_share_one_load() -> None:
    models = FakeModels(a=1)
    models.gates["local/a"] = gate = asyncio.Event()
    loaded = cache(models)

    async def use() -> str:
        async with loaded.lease("local/a") as model:
            return model

    users = [asyncio.create_task(use()) for _ in range(5)]
    await settle()
    assert models.opens() == ["local/a"]
    gate.set()
    assert await asyncio.gather(*users) == ["model local/a"] * 5
    assert models.opens() == ["local/a"]


async def test_a_failed_load_fails_every_waiter_once_and_is_not_kept() -> None:
    models = FakeModels(a=1)
    models.failing.add("local/a")
    models.gates["local/a"] = gate = asyncio.Event()
    loaded = cache(models)
    waiters = [asyncio.create_task(loaded.load("local/a")) for _ in range(3)]
    await settle()
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert [str(r) for r in results] == ["cannot read local/a"] * 3
    assert models.opens() == ["local/a"]
    assert (loaded.loaded(), loaded.used_bytes()) == ([], 0)
    models.failing.clear()
    await loaded.load("local/a")  # a later request tries again
    assert models.opens() == ["local/a", "local/a"]


async def test_eviction_waits_for_the_drain_and_proceeds_right_after_the_release() -> None:
    models = FakeModels(a=2, b=2)
    loaded = cache(models, budget_mb=3)  # holds one of them
    generation = loaded.lease("local/a")
    await generation.__aenter__()
    swap = asyncio.create_task(loaded.load("local/b"))
    await settle()
    assert not swap.done()
    assert models.events == ["open local/a"]  # a is not closed under its generation
    assert loaded.leases("local/a") == 1
    models.events.append("generation on a ends")
    await generation.__aexit__(None, None, None)
    await asyncio.wait_for(swap, timeout=1)
    assert models.events == [
        "open local/a",
        "generation on a ends",
        "close local/a",
        "open local/b",
    ]
    assert loaded.loaded() == ["local/b"]


async def test_a_busy_model_is_passed_over_for_an_idle_one() -> None:
    models = FakeModels(a=1, b=1, c=1)
    loaded = cache(models, budget_mb=2)
    await loaded.load("local/a")
    await loaded.load("local/b")
    async with loaded.lease("local/a"):  # the least recently used, but busy
        await loaded.load("local/c")
        assert models.closes() == ["local/b"]
    assert loaded.loaded() == ["local/a", "local/c"]


async def test_keep_loaded_that_fits_is_never_the_one_evicted() -> None:
    models = FakeModels(a=1, b=1, c=1)
    loaded = cache(models, budget_mb=2)
    await loaded.load("local/a")  # least recently used
    await loaded.load("local/c")
    await loaded.load("local/b", keep_loaded=["local/a"])
    assert models.closes() == ["local/c"]
    assert loaded.loaded() == ["local/a", "local/b"]


async def test_keep_loaded_beyond_the_budget_is_refused_naming_every_size() -> None:
    models = FakeModels(a=341, b=342)
    loaded = cache(models, budget_mb=512)
    await loaded.load("local/a")
    with pytest.raises(MemoryBudgetExceeded) as refused:
        await loaded.load("local/b", keep_loaded=["local/a"])
    err = refused.value
    assert err.message == (
        "local/b (342 MiB) cannot load beside local/a (341 MiB): together 683 MiB, "
        "over the memory budget of 512 MiB"
    )
    assert (err.model_id, err.sizes_mb, err.budget_mb, err.max_loaded) == (
        "local/b",
        {"local/b": 342, "local/a": 341},
        512,
        10,
    )
    assert models.events == ["open local/a"]  # nothing unloaded, nothing opened
    assert loaded.loaded() == ["local/a"]


async def test_keep_loaded_beyond_max_loaded_is_refused_by_count() -> None:
    models = FakeModels(a=1, b=1)
    loaded = cache(models, max_loaded=1)
    await loaded.load("local/a")
    with pytest.raises(MemoryBudgetExceeded) as refused:
        loaded.can_hold("local/b", ["local/a"])
    assert refused.value.message == (
        "local/b (1 MiB) cannot load beside local/a (1 MiB): this backend holds at most "
        "1 loaded model(s) (max_loaded)"
    )
    await loaded.load("local/b")  # without keep_loaded it replaces a
    assert models.closes() == ["local/a"]


async def test_a_model_larger_than_the_whole_budget_is_refused_before_any_eviction() -> None:
    models = FakeModels(a=1, big=600)
    loaded = cache(models, budget_mb=512)
    await loaded.load("local/a")
    async with asyncio.timeout(1):
        with pytest.raises(MemoryBudgetExceeded) as refused:
            async with loaded.lease("local/big"):
                pass
    assert refused.value.message == (
        "local/big (600 MiB) is larger than the whole memory budget of 512 MiB"
    )
    assert refused.value.sizes_mb == {"local/big": 600}
    assert models.events == ["open local/a"]


async def test_an_unload_waits_for_the_leases_and_takes_no_new_one_meanwhile() -> None:
    models = FakeModels(a=1)
    loaded = cache(models)
    generation = loaded.lease("local/a")
    await generation.__aenter__()
    unload = asyncio.create_task(loaded.unload("local/a"))
    await settle()
    late = asyncio.create_task(loaded.load("local/a"))
    await settle()
    assert not unload.done() and not late.done()
    assert models.closes() == []
    await generation.__aexit__(None, None, None)
    assert await unload is True
    await late
    assert models.events == ["open local/a", "close local/a", "open local/a"]
    assert await loaded.unload("local/a") is True
    assert await loaded.unload("local/a") is False


async def test_models_idle_past_the_timeout_are_unloaded_oldest_first() -> None:
    models = FakeModels(a=1, b=1, c=1)
    clock = Clock()
    loaded = cache(models, idle_timeout_s=10, clock=clock)
    await loaded.load("local/a")
    clock.now = 5
    await loaded.load("local/b")
    await loaded.load("local/c")
    clock.now = 9.999
    assert await loaded.unload_idle() == []
    clock.now = 10
    assert await loaded.unload_idle() == ["local/a"]
    async with loaded.lease("local/b"):
        clock.now = 100
        assert await loaded.unload_idle() == ["local/c"]  # b is in use
    clock.now = 109.999
    assert await loaded.unload_idle() == []  # b was last used when its lease ended
    clock.now = 110
    assert await loaded.unload_idle() == ["local/b"]
    assert models.closes() == ["local/a", "local/c", "local/b"]


async def test_the_idle_task_unloads_on_its_own_and_stops_with_close() -> None:
    models = FakeModels(a=1)
    loaded = cache(models, idle_timeout_s=0.02)
    loaded.start()
    await loaded.load("local/a")
    await asyncio.wait_for(models.closed.wait(), timeout=2)
    assert loaded.loaded() == []
    await loaded.close()


async def test_preload_loads_in_order_and_skips_what_cannot_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    models = FakeModels(a=1, b=1, big=10)
    loaded = cache(models, budget_mb=5)
    with caplog.at_level(logging.WARNING, "modelyard.backends.loaded_models"):
        await loaded.preload(["local/a", "local/missing", "local/big", "local/b"])
    assert loaded.loaded() == ["local/a", "local/b"]
    assert [r.getMessage() for r in caplog.records] == [
        "preloading local/missing failed: model 'local/missing' is not in the fake backend",
        "preloading local/big failed: "
        "local/big (10 MiB) is larger than the whole memory budget of 5 MiB",
    ]


async def test_each_open_is_timed_and_reported_once() -> None:
    models = FakeModels(a=1)
    models.open_s = 0.02
    reported: list[tuple[str, float]] = []
    loaded = cache(models, on_loaded=lambda m, ms: reported.append((m, ms)))
    assert loaded.cold_start_ms("local/a") is None
    await loaded.load("local/a")
    await loaded.load("local/a")  # loaded already: no open, no report
    async with loaded.lease("local/a"):
        pass
    (model_id, took), *more = reported
    assert (model_id, more) == ("local/a", [])
    assert took >= 20
    assert loaded.cold_start_ms("local/a") == took


async def test_a_caller_that_gives_up_does_not_cancel_the_others_load() -> None:
    models = FakeModels(a=1)
    models.gates["local/a"] = gate = asyncio.Event()
    loaded = cache(models)
    impatient = asyncio.create_task(loaded.load("local/a"))
    patient = asyncio.create_task(loaded.load("local/a"))
    await settle()
    impatient.cancel()
    await settle()
    gate.set()
    await patient
    assert impatient.cancelled()
    assert (models.opens(), loaded.loaded()) == (["local/a"], ["local/a"])


async def test_close_waits_for_every_lease_then_unloads_everything() -> None:
    models = FakeModels(a=1, b=1)
    loaded = cache(models)
    await loaded.load("local/b")
    generation = loaded.lease("local/a")
    await generation.__aenter__()
    closing = asyncio.create_task(loaded.close())
    await settle()
    assert models.closes() == ["local/b"]  # a waits for its generation
    await generation.__aexit__(None, None, None)
    await closing
    assert models.closes() == ["local/b", "local/a"]
