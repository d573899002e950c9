"""`BackendPool.load` into an in-process host whose engine has a memory budget, at the mutant
the fourth run left open (docs/testing.md: `keep_loaded` not passed to the host).

The engine is a `ScriptedEngine` whose models live in the real `LoadedModels` budget, as
the in-process speech engines' do (`backends/speech/in_process.py`: `load` may unload an
idle model, `load_beside` refuses instead); its opener sizes each model at 300 bytes of a
400-byte budget, so one model fits at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from support.scripted_engine import ScriptedEngine

from modelyard.backends.host import BackendHost
from modelyard.backends.loaded_models import LoadedModels
from modelyard.gateway.backend_pool import BackendPool
from modelyard_client.errors import MemoryBudgetExceeded
from modelyard_client.v1 import common_pb2

ENDPOINT = "in-process:1"
A, B = "local/a", "local/b"


class _Sized:
    """Every model 300 bytes; opening one yields its id."""

    def size_bytes(self, model_id: str) -> int:
        return 300

    async def open(self, model_id: str) -> str:
        return model_id

    async def close(self, model_id: str, model: str) -> None:
        pass


class _BudgetedScripted(ScriptedEngine):
    """A scripted engine whose loads go through a `LoadedModels` budget of one model."""

    def __init__(self) -> None:
        super().__init__((A, B))
        self.budget: LoadedModels[str] = LoadedModels(_Sized(), budget_bytes=400, max_loaded=2)

    async def start(self) -> None:
        self.budget.start()

    async def load(self, model_id: str) -> float:
        return await self.budget.load(model_id)

    async def load_beside(self, model_id: str, keep_loaded: Sequence[str]) -> float:
        return await self.budget.load(model_id, keep_loaded)

    def report_cold_starts(self, report: Callable[[str, float], None]) -> None:
        pass

    def loaded_models(self) -> list[str]:
        return self.budget.loaded()


async def test_an_in_process_load_beside_a_model_to_keep_is_refused_not_made_by_unloading_it() -> (
    None
):
    engine = _BudgetedScripted()
    host = BackendHost([engine])
    await host.start()
    pool = BackendPool()
    pool.add_in_process(ENDPOINT, host)
    deployment = common_pb2.Deployment(backend="scripted", endpoint=ENDPOINT)
    try:
        async with asyncio.timeout(30):
            await pool.load(deployment, A)
            with pytest.raises(MemoryBudgetExceeded):
                await pool.load(deployment, B, [A])
            assert engine.loaded_models() == [A]  # kept
            await pool.load(deployment, B)  # nothing to keep: A may go
            assert engine.loaded_models() == [B]
    finally:
        await engine.budget.close()
