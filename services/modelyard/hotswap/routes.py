"""The route table: which model serves each alias and each task type, free of gRPC.

Holds every route in memory for reads, persists each change to SQLite before
it becomes visible, and fans changes out to watchers (the gateways' copies).
A route is keyed by its alias or its task type (`route_keys`).

Routes named by the configuration seed the table at start: a route the file
names and the table lacks is added; one the table already holds keeps the
model it has, since a swap may have moved it since (it outlives a restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from modelyard.catalog_ids import catalog_id_problem
from modelyard.hotswap.store import HotSwapStore
from modelyard.route_keys import describe, route_key
from modelyard_client.errors import FailedPrecondition, InvalidRequest, NotFound, WatcherFellBehind
from modelyard_client.v1 import hotswap_pb2

Change = hotswap_pb2.RouteChange
# A watcher this far behind is cut off and told to resume (a table has tens of routes:
# only a watcher that stopped reading gets here).
WATCH_QUEUE_LIMIT = 1024
_STOPPING = "stopping"
_FELL_BEHIND = "fell behind"


class RouteTable:
    def __init__(self, store: HotSwapStore) -> None:
        self._store = store
        self._routes: dict[str, hotswap_pb2.Route] = dict(store.load_all())
        self._watchers: set[asyncio.Queue[Change | str]] = set()

    @property
    def store(self) -> HotSwapStore:
        return self._store

    @property
    def table_id(self) -> str:
        return self._store.table_id

    @property
    def revision(self) -> int:
        return self._store.revision()

    def close(self) -> None:
        self._store.close()

    def get(self, alias: str = "", task_type: int = 0, for_model: str = "") -> hotswap_pb2.Route:
        key = route_key(alias, task_type, for_model)
        try:
            return self._routes[key]
        except KeyError:
            missing = hotswap_pb2.Route(alias=alias, task_type=task_type, for_model=for_model)  # type: ignore[arg-type]
            raise NotFound(f"no route for {describe(missing)}") from None

    def routes(self) -> list[hotswap_pb2.Route]:
        """Every route: aliases by name, then task types in their enum's order, then models'
        fallback lists by model id."""
        return sorted(
            self._routes.values(),
            key=lambda r: (not r.alias, bool(r.for_model), r.alias, r.task_type, r.for_model),
        )

    def find(self, alias: str = "", task_type: int = 0) -> hotswap_pb2.Route | None:
        """The route for `alias` or `task_type`, None when there is none (`get` raises)."""
        return self._routes.get(route_key(alias, task_type))

    def set_route(
        self,
        alias: str,
        task_type: int,
        model_id: str,
        swap: hotswap_pb2.SwapStatus | None = None,
        split: hotswap_pb2.Split | None = None,
    ) -> hotswap_pb2.Route:
        """Point a route at `model_id` (stored, then visible to readers and watchers).

        `swap`: the status of the swap that moves it, stored in the same
        transaction as the route. `split`: how its calls are divided while an
        A/B test or a canary swap runs; None ends any split the route had.
        """
        key = route_key(alias, task_type)
        problem = catalog_id_problem(model_id)
        if problem is not None:
            raise InvalidRequest(f"model id {model_id!r} is invalid: {problem}", field="model_id")
        current = self._routes.get(key)
        unchanged_split = (split is None and not current_split(current)) or (
            current is not None and split is not None and current.split == split
        )
        if (
            current is not None
            and current.model_id == model_id
            and unchanged_split
            and swap is None
        ):
            return current  # unchanged: no new revision
        route = hotswap_pb2.Route(alias=alias, task_type=task_type, model_id=model_id)  # type: ignore[arg-type]
        if current is not None:  # a swap or a split keeps the route's fallbacks
            route.fallback_models.extend(current.fallback_models)
        if split is not None:
            route.split.CopyFrom(split)
            if split.kind == hotswap_pb2.Split.KIND_AB_TEST:
                route.ab_test_id = split.id
        route.updated_at.GetCurrentTime()
        stored = (
            self._store.put(key, route) if swap is None else self._store.switch(key, route, swap)
        )
        self._routes[key] = stored
        self._publish(Change(kind=Change.KIND_UPSERTED, revision=stored.revision, route=stored))
        return stored

    def set_fallbacks(
        self, alias: str, for_model: str, fallback_models: list[str]
    ) -> hotswap_pb2.Route:
        """Set the fallback list of an alias's route (which must exist) or of a model
        (its own route, holding only the list); checked by the caller (`fallbacks.py`)."""
        key = route_key(alias, 0, for_model)
        current = self._routes.get(key)
        if current is None and alias:
            raise NotFound(f"no route for alias '{alias}': fallbacks follow an alias's route")
        if current is not None and list(current.fallback_models) == fallback_models:
            return current  # unchanged: no new revision
        route = hotswap_pb2.Route()
        if current is not None:
            route.CopyFrom(current)
        else:
            route.for_model = for_model
        del route.fallback_models[:]
        route.fallback_models.extend(fallback_models)
        route.updated_at.GetCurrentTime()
        stored = self._store.put(key, route)
        self._routes[key] = stored
        self._publish(Change(kind=Change.KIND_UPSERTED, revision=stored.revision, route=stored))
        return stored

    def seed(self, aliases: Mapping[str, str], task_types: Mapping[int, str]) -> list[str]:
        """Add the configured routes the table lacks; the keys of those added."""
        added = []
        for alias, model_id in aliases.items():
            if route_key(alias=alias) not in self._routes:
                self.set_route(alias, 0, model_id)
                added.append(route_key(alias=alias))
        for task_type, model_id in task_types.items():
            if route_key(task_type=task_type) not in self._routes:
                self.set_route("", task_type, model_id)
                added.append(route_key(task_type=task_type))
        return added

    # ---- watching -----------------------------------------------------------

    def _publish(self, change: Change) -> None:
        for queue in list(self._watchers):
            if queue.qsize() < WATCH_QUEUE_LIMIT:
                queue.put_nowait(change)
            else:
                self._watchers.discard(queue)
                queue.put_nowait(_FELL_BEHIND)

    def end_watches(self) -> None:
        """End every watch normally after the changes it holds (the service is stopping)."""
        for queue in list(self._watchers):
            self._watchers.discard(queue)
            queue.put_nowait(_STOPPING)

    async def watch(self, after_revision: int, table_id: str = "") -> AsyncGenerator[Change, None]:
        """Routes changed after `after_revision` (0: every route), SYNCED, then live changes."""
        queue: asyncio.Queue[Change | str] = asyncio.Queue()
        self._watchers.add(queue)  # before reading the table, so nothing falls between
        try:
            current = self.revision
            if after_revision:
                if table_id and table_id != self.table_id:
                    raise FailedPrecondition(
                        f"after_revision {after_revision} counts in route table {table_id}, "
                        f"not in this service's table {self.table_id} (it started over); "
                        "resume with after_revision=0"
                    )
                if after_revision > current:
                    raise FailedPrecondition(
                        f"after_revision {after_revision} is ahead of the route table "
                        f"(revision {current}); resume with after_revision=0"
                    )
            for route in sorted(self._routes.values(), key=lambda r: r.revision):
                if route.revision > after_revision:
                    yield Change(kind=Change.KIND_UPSERTED, revision=route.revision, route=route)
            last = current
            yield Change(kind=Change.KIND_SYNCED, revision=last, table_id=self.table_id)
            while True:
                item = await queue.get()
                if item == _STOPPING:
                    return
                if not isinstance(item, Change):
                    raise WatcherFellBehind(
                        f"route watcher fell more than {WATCH_QUEUE_LIMIT} changes behind; "
                        f"resume with after_revision={last}"
                    )
                if item.revision > last:
                    last = item.revision
                    yield item
        finally:
            self._watchers.discard(queue)


def current_split(route: hotswap_pb2.Route | None) -> str:
    """The id of the split dividing `route`'s calls; "" when there is none."""
    return route.split.id if route is not None and route.split.arms else ""
