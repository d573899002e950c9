"""The gateway's live catalog misses no change across a registry restart."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from conftest import free_port

from modelyard.assembly import Settings, start_stack
from modelyard.gateway.catalog_view import CatalogView
from modelyard.registry.catalog import Catalog
from modelyard.registry.store import CatalogStore
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc


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


@pytest.mark.parametrize("new_changes", [1, 2, 3], ids=["fewer", "as-many", "more"])
async def test_view_resyncs_when_the_registry_restarts_on_an_empty_data_dir(
    tmp_path: Path, new_changes: int
) -> None:
    """Revisions count anew in a new catalog: the view's resume point means nothing there,
    however many changes the new catalog has had (here 1, 2 or 3, against the view's 2)."""
    address = f"127.0.0.1:{free_port()}"
    old = Settings(
        listen=address,
        roles=("registry",),
        data_dir=tmp_path / "old",
        discovery=False,
        assemble_default_model=False,
    )
    registry = await start_stack(old)
    view = CatalogView()
    follower = asyncio.create_task(view.follow(address, retry_s=0.1))
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            for model_id in ("p/a", "p/b"):
                model = common_pb2.ModelEntry(id=model_id, provider="p")
                await stub.RegisterModel(registry_pb2.RegisterModelRequest(model=model))
        await _until(lambda: view.revision == 2)
        await registry.stop(0)

        # The new registry's catalog had its changes (backends announcing, discovery)
        # before the view reconnects.
        fresh = Catalog(CatalogStore(tmp_path / "new" / "registry.sqlite3"))
        wanted = {f"p/new{i}" for i in range(new_changes)}
        for model_id in sorted(wanted):
            fresh.register(common_pb2.ModelEntry(id=model_id, provider="p"), upsert=False)
        fresh.close()

        registry = await start_stack(dataclasses.replace(old, data_dir=tmp_path / "new"))
        await _until(lambda: {m.id for m in view.models()} == wanted)
        assert view.revision == new_changes
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await registry.stop(0)
