"""Where the gateway's live catalog resumes a broken watch: never from a half-read snapshot,
and from a full snapshot when the registry refuses the resume point."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

from modelyard.gateway.catalog_view import CatalogView
from modelyard.server.runtime import RunningServer, bind, start_server
from modelyard.server.unimplemented import with_unimplemented
from modelyard_client.errors import BackendUnavailable, ModelyardError, WatcherFellBehind
from modelyard_client.v1 import common_pb2, registry_pb2, registry_pb2_grpc

Change = registry_pb2.ModelChange
Step = Change | ModelyardError


def upserted(model_id: str, revision: int) -> Change:
    model = common_pb2.ModelEntry(id=model_id, provider="p", revision=revision)
    return Change(kind=Change.KIND_UPSERTED, revision=revision, model=model)


def synced(revision: int) -> Change:
    return Change(kind=Change.KIND_SYNCED, revision=revision, catalog_id="c1")


class ScriptedRegistry(registry_pb2_grpc.RegistryServiceServicer):
    """Answers the n-th WatchModels with the n-th script: its changes, then its error,
    or, a script without one, an open stream; records each call's resume point."""

    def __init__(self, *scripts: Sequence[Step]) -> None:
        self.scripts = scripts
        self.resumed_after: list[int] = []

    async def WatchModels(
        self, request: registry_pb2.WatchModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Change]:
        self.resumed_after.append(request.after_revision)
        for step in self.scripts[min(len(self.resumed_after), len(self.scripts)) - 1]:
            if isinstance(step, ModelyardError):
                raise step
            yield step
        await asyncio.Event().wait()  # live, and nothing more happens


@contextlib.asynccontextmanager
async def following(registry: ScriptedRegistry) -> AsyncIterator[CatalogView]:
    server: RunningServer = await start_server([bind(registry)], "127.0.0.1:0")
    view = CatalogView()
    follower = asyncio.create_task(view.follow(f"127.0.0.1:{server.port}", retry_s=0.01))
    try:
        yield view
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await server.server.stop(0)


async def _until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_watch_broken_mid_snapshot_resumes_from_a_new_snapshot() -> None:
    # A snapshot comes in id order, not revision order: after p/a (revision 4), the
    # unread p/c (revision 3) is older. Resuming after 4 would never deliver it.
    registry = with_unimplemented(
        ScriptedRegistry,
        [upserted("p/a", 4), upserted("p/b", 2), BackendUnavailable("registry went away")],
        [upserted("p/a", 4), upserted("p/b", 2), upserted("p/c", 3), synced(5)],
    )
    async with following(registry) as view:
        await _until(lambda: view.synced.is_set())
        assert registry.resumed_after == [0, 0]
        assert sorted(m.id for m in view.models()) == ["p/a", "p/b", "p/c"]
        assert view.revision == 5


async def test_a_refused_resume_point_starts_over_from_a_full_snapshot() -> None:
    registry = with_unimplemented(
        ScriptedRegistry,
        [upserted("p/a", 1), synced(1), upserted("p/b", 2), BackendUnavailable("went away")],
        [WatcherFellBehind("after_revision 2 is older than the change log (oldest 9); resync")],
        [upserted("p/c", 9), synced(9)],
    )
    async with following(registry) as view:
        await _until(lambda: view.revision == 9)
        assert registry.resumed_after == [0, 2, 0]
        # The new snapshot replaces the whole copy: p/a and p/b are gone with the old log.
        assert [m.id for m in view.models()] == ["p/c"]
