"""The gateway's live catalog misses no change across a registry restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import grpc
from conftest import free_port

from modelyard.assembly import Settings, start_stack
from modelyard.gateway.catalog_view import CatalogView
from modelyard.registry.catalog import Catalog
from modelyard.registry.store import CatalogStore
from modelyard.v1 import common_pb2, registry_pb2, registry_pb2_grpc


async def _until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_view_resumes_after_the_registry_restarts(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    opts = Settings(
        listen=address,
        roles=("registry",),
        data_dir=tmp_path,
        discovery=False,
        assemble_default_model=False,
    )
    registry = await start_stack(opts)
    view = CatalogView()
    follower = asyncio.create_task(view.follow(address, retry_s=0.1))
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            model = common_pb2.ModelEntry(id="p/a", provider="p")
            await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=model))
        await _until(lambda: {m.id for m in view.models()} == {"p/a"})
        await registry.stop(0)

        # While the registry is down, another process changes the catalog file.
        offline = Catalog(CatalogStore(tmp_path / "registry.sqlite3"))
        offline.register(common_pb2.ModelEntry(id="p/b", provider="p"), upsert=False)
        offline.unregister("p/a")
        offline.close()

        registry = await start_stack(opts)
        await _until(lambda: {m.id for m in view.models()} == {"p/b"})
        assert view.revision == 3
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await registry.stop(0)
