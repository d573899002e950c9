"""The gateway's in-memory copy of the route table, kept live by `WatchRoutes`.

A request's `model` that is an alias (no ``/``: catalog ids always have one)
is looked up here, as is the task type of a request that names no model;
the rules of the copy are `WatchedCopy`'s, shared with the catalog's copy.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

import grpc

from modelyard.gateway.watched_copy import REMOVED, SYNCED, UPSERTED, WatchedCopy
from modelyard.route_keys import alias_key, task_key
from modelyard.v1 import hotswap_pb2, hotswap_pb2_grpc

Change = hotswap_pb2.RouteChange
_KINDS = {Change.KIND_UPSERTED: UPSERTED, Change.KIND_REMOVED: REMOVED, Change.KIND_SYNCED: SYNCED}


class RouteView(WatchedCopy[hotswap_pb2.Route]):
    what = "route table"

    def for_alias(self, alias: str) -> hotswap_pb2.Route | None:
        return self._items.get(alias_key(alias))

    def for_task(self, task_type: int) -> hotswap_pb2.Route | None:
        return self._items.get(task_key(task_type)) if task_type else None

    def routes_tasks(self) -> bool:
        """Whether any task type has a route (else a request's task needs no analysing)."""
        return any(key.startswith("task:") for key in self._items)

    def _open(
        self, channel: grpc.aio.Channel, after_revision: int
    ) -> AsyncIterable[hotswap_pb2.RouteChange]:
        stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
        request = hotswap_pb2.WatchRoutesRequest(
            after_revision=after_revision, table_id=self.source_id
        )
        return stub.WatchRoutes(request)

    def _read(
        self, change: hotswap_pb2.RouteChange
    ) -> tuple[str, str, hotswap_pb2.Route | None, int, str]:
        route = change.route
        if change.kind == Change.KIND_SYNCED:
            key = ""
        elif route.alias:
            key = alias_key(route.alias)
        else:
            key = task_key(route.task_type)
        return _KINDS.get(change.kind, ""), key, route, change.revision, change.table_id
