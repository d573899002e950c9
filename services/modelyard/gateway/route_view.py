"""The gateway's in-memory copy of the route table, kept live by `WatchRoutes`.

A request's `model` that is an alias (no ``/``: catalog ids always have one)
is looked up here, as is the task type of a request that names no model;
the rules of the copy are `WatchedCopy`'s, shared with the catalog's copy.

An alias whose route carries a `Split` (an A/B test, a canary swap) has a
`SplitPlan` in `splits`, worked out once when the change arrives, so the
request path reads one dict: empty, the common case, costs one check.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass

import grpc

from modelyard._native import assign_arm
from modelyard.gateway.watched_copy import (
    REMOVED,
    STALE_AFTER_S,
    SYNCED,
    UPSERTED,
    WatchedCopy,
)
from modelyard.route_keys import alias_key, model_key, task_key
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc

log = logging.getLogger(__name__)

Change = hotswap_pb2.RouteChange
_KINDS = {Change.KIND_UPSERTED: UPSERTED, Change.KIND_REMOVED: REMOVED, Change.KIND_SYNCED: SYNCED}


@dataclass(frozen=True, slots=True)
class SplitPlan:
    """One alias's `Split`, checked and ready to draw from: the arms in the split's order."""

    split_id: str
    sticky_by: int  # hotswap_pb2.StickyBy
    names: tuple[str, ...]
    model_ids: tuple[str, ...]
    weights: tuple[float, ...]

    @classmethod
    def of(cls, split: hotswap_pb2.Split) -> SplitPlan:
        """The plan of `split`; `ValueError` saying why when no call could be drawn on it."""
        for i, arm in enumerate(split.arms):
            if not arm.model_id:
                raise ValueError(f"arm {i} ({arm.name!r}) names no model")
            if not math.isfinite(arm.weight) or arm.weight < 0:
                raise ValueError(f"arm {i} ({arm.name!r}) has weight {arm.weight}")
        if not any(arm.weight for arm in split.arms):
            raise ValueError("every arm's weight is 0")
        return cls(
            split.id,
            split.sticky_by,
            tuple(arm.name for arm in split.arms),
            tuple(arm.model_id for arm in split.arms),
            tuple(arm.weight for arm in split.arms),
        )

    def arm_for(self, key: str) -> int:
        """The arm of a call whose sticky key is `key`: the same key, the same arm, while the
        weights stay. The split's id prefixes the key, so two splits shuffle keys apart."""
        return assign_arm(f"{self.split_id}:{key}", self.weights)


class RouteView(WatchedCopy[hotswap_pb2.Route]):
    what = "route table"

    def __init__(self, *, stale_after_s: float = STALE_AFTER_S) -> None:
        super().__init__(stale_after_s=stale_after_s)
        # Alias -> the plan of its route's split; only aliases with one.
        self.splits: Mapping[str, SplitPlan] = {}

    def for_alias(self, alias: str) -> hotswap_pb2.Route | None:
        return self._items.get(alias_key(alias))

    def aliases(self) -> list[str]:
        """The aliases that have a route (the HTTP edge lists them as models)."""
        prefix = alias_key("")
        return [key[len(prefix) :] for key in self._items if key.startswith(prefix)]

    def routes(self) -> list[hotswap_pb2.Route]:
        """Every route the copy holds: aliases', task types' and fallback lists."""
        return list(self._items.values())

    def for_task(self, task_type: int) -> hotswap_pb2.Route | None:
        return self._items.get(task_key(task_type)) if task_type else None

    def fallbacks_of(self, model_id: str) -> list[str]:
        """The fallback list set at run time for the catalog model `model_id` (`SetFallbacks`)."""
        route = self._items.get(model_key(model_id))
        return list(route.fallback_models) if route is not None else []

    def routes_tasks(self) -> bool:
        """Whether any task type has a route (else a request's task needs no analysing)."""
        return any(key.startswith("task:") for key in self._items)

    def apply(self, change: hotswap_pb2.RouteChange) -> str:
        kind = super().apply(change)
        if kind == SYNCED:  # a snapshot may have replaced every route
            self.splits = _plans(self._items.values())
        elif kind in (UPSERTED, REMOVED) and self._pending is None and change.route.alias:
            # A live change to one alias: rebuilt whole, so a reader's dict never changes.
            alias = change.route.alias
            if alias in self.splits or (kind == UPSERTED and change.route.split.arms):
                splits = {a: plan for a, plan in self.splits.items() if a != alias}
                if kind == UPSERTED:
                    splits.update(_plans([change.route]))
                self.splits = splits
        return kind

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
        elif route.for_model:
            key = model_key(route.for_model)
        else:
            key = task_key(route.task_type)
        return _KINDS.get(change.kind, ""), key, route, change.revision, change.table_id


def _plans(routes: Iterable[hotswap_pb2.Route]) -> dict[str, SplitPlan]:
    """The split plans of the alias routes among `routes` that carry a split.

    A split without arms is no split (one that ended); one no call could be
    drawn on (an arm without a model, a bad weight) is logged and left out:
    either way the alias is served by the route's `model_id`.
    """
    plans = {}
    for route in routes:
        if not route.alias or not route.split.arms:  # no split, or one that ended
            continue
        try:
            plans[route.alias] = SplitPlan.of(route.split)
        except ValueError as exc:
            log.warning(
                "split %r of alias %r is ignored (%s): the alias is served by %s",
                route.split.id,
                route.alias,
                exc,
                route.model_id,
            )
    return plans
