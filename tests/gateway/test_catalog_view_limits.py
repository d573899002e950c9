"""The gateway's catalog copy reads any entry the registry sends, starts over from a snapshot
when a watch fails on what it read, and is not routed on once known stale for too long."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from conftest import StackFactory

from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.server.runtime import RunningServer, bind, start_server
from modelyard.server.unimplemented import with_unimplemented
from modelyard_client.errors import BackendUnavailable, ModelyardError, RequestTooLarge
from modelyard_client.v1 import common_pb2, gateway_pb2, registry_pb2, registry_pb2_grpc

Change = registry_pb2.ModelChange
STALE = "the gateway's copy of the catalog has been stale for "


def upserted(model_id: str, revision: int) -> Change:
    model = common_pb2.ModelEntry(id=model_id, provider="p", revision=revision)
    return Change(kind=Change.KIND_UPSERTED, revision=revision, model=model)


def synced(revision: int) -> Change:
    return Change(kind=Change.KIND_SYNCED, revision=revision, catalog_id="c1")


class BrokenAfterSync(registry_pb2_grpc.RegistryServiceServicer):
    """The first watch: p/a, SYNCED, p/b, then `error`. Every later one: `error` at once,
    until `healed`; then a snapshot of p/c alone. Records each call's resume point."""

    def __init__(self, error: ModelyardError) -> None:
        self.error = error
        self.healed = False
        self.resumed_after: list[int] = []

    async def WatchModels(
        self, request: registry_pb2.WatchModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Change]:
        self.resumed_after.append(request.after_revision)
        if len(self.resumed_after) == 1:
            for change in (upserted("p/a", 1), synced(1), upserted("p/b", 2)):
                yield change
            raise self.error
        if not self.healed:
            raise self.error
        for change in (upserted("p/c", 3), synced(3)):
            yield change
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def following(
    registry: BrokenAfterSync, view: CatalogView, retry_s: float = 0.01
) -> AsyncIterator[CatalogView]:
    server: RunningServer = await start_server([bind(registry)], "127.0.0.1:0")
    follower = asyncio.create_task(view.follow(f"127.0.0.1:{server.port}", retry_s=retry_s))
    try:
        yield view
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await server.server.stop(0)


async def _until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_the_view_reads_an_entry_over_grpcs_default_message_limit(
    make_stack: StackFactory,
) -> None:
    """One such entry (stored before the registry bounded entries) used to stop every
    gateway's watch: RESOURCE_EXHAUSTED at every retry, a restart failing after 30 s."""
    stack = await make_stack(roles=("registry",))
    assert stack.catalog is not None
    big = common_pb2.ModelEntry(id="p/big", provider="p")
    big.metadata["notes"] = "x" * (5 * 1024 * 1024)
    stack.catalog.put(big)  # as stored before: `put` writes a checked entry unchecked
    view = CatalogView()
    follower = asyncio.create_task(view.follow(stack.address, retry_s=0.05))
    try:
        await asyncio.wait_for(view.synced.wait(), timeout=10)
        assert len(view.get("p/big").metadata["notes"]) == 5 * 1024 * 1024
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


async def test_a_watch_failing_on_what_it_read_starts_over_from_a_snapshot() -> None:
    """Resuming after p/b would replay the change it failed on, forever; and the change
    log still holds entries the catalog has since removed."""
    registry = with_unimplemented(BrokenAfterSync, RequestTooLarge("received message larger"))
    registry.healed = True
    async with following(registry, CatalogView()) as view:
        await _until(lambda: view.revision == 3)
        assert registry.resumed_after == [0, 0]
        assert [m.id for m in view.models()] == ["p/c"]


async def test_a_copy_known_stale_is_not_routed_on_after_its_bound() -> None:
    registry = with_unimplemented(BrokenAfterSync, ModelyardError("the registry broke"))
    core = GatewayCore(CatalogView(stale_after_s=0.2), BackendPool())
    request = gateway_pb2.GenerateRequest(model="p/a")
    request.input.text = "hi"
    async with following(registry, core.catalog) as view:
        await _until(lambda: len(registry.resumed_after) >= 2)
        assert view.stale_since is not None
        assert view.stale_reason == "catalog watch failed (INTERNAL: the registry broke)"
        # Within the bound, the request is routed: p/a has no deployment, and says so.
        with pytest.raises(BackendUnavailable) as routed:
            await core.generate(request)
        assert routed.value.message == "model 'p/a' has no deployment: no backend serves it"
        await asyncio.sleep(0.25)
        with pytest.raises(BackendUnavailable) as refused:
            await core.generate(request)
        assert refused.value.message.startswith(STALE)
        assert refused.value.message.endswith(
            "s (catalog watch failed (INTERNAL: the registry broke)); "
            "no request is routed on it until it resynchronises"
        )
        registry.healed = True
        await _until(lambda: view.revision == 3)
        assert view.stale_since is None
        view.check_fresh()


async def test_an_unreachable_registry_leaves_the_copy_fresh() -> None:
    """The gateway keeps serving from the last catalog it had while the registry is away."""
    registry = with_unimplemented(BrokenAfterSync, BackendUnavailable("the registry is away"))
    async with following(registry, CatalogView(stale_after_s=0)) as view:
        await _until(lambda: len(registry.resumed_after) >= 3)
        assert registry.resumed_after[:3] == [0, 2, 2]  # resumed, not started over
        assert view.stale_since is None
        view.check_fresh()


async def test_a_failing_watch_backs_off_rather_than_spin() -> None:
    registry = with_unimplemented(BrokenAfterSync, ModelyardError("the registry broke"))
    async with following(registry, CatalogView(), retry_s=0.02):
        await asyncio.sleep(1.0)
        # 0.04 + 0.08 + 0.16 + 0.32 s: five watches in the first second, not fifty.
        assert 3 <= len(registry.resumed_after) <= 6
