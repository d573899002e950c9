"""The health monitor's ``standby`` recovery: the routes of a tripped model moved to a standby.

A route's standby is the first of its fallbacks that is healthy now: the
route's own list (`SetFallbacks` on its alias), else the tripped model's list
(`SetFallbacks` with `for_model`). A fallback that is an alias stands for the
model its route names. Healthy: in the catalog, servable (`servable`), and
not tripped by the monitor at every deployment.

Each route whose active model (`Route.model_id`) is the tripped one is moved
by the hot-swap service's own `Swap` (so the move is validated, recorded,
watchable and can be rolled back like any swap), never by writing the route;
a route split by an A/B test or a canary is left to its test (Swap refuses it).
The gateway sees the route move through `WatchRoutes`, as it sees any swap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.route_view import RouteView
from modelyard.route_keys import TASK_TYPES, describe
from modelyard.security.channels import PLAINTEXT, InternalChannels
from modelyard.servable import servable
from modelyard.telemetry import metadata_with_trace
from modelyard_client.channel import CHANNEL_OPTIONS
from modelyard_client.errors import FailedPrecondition, ModelyardError, remote_errors
from modelyard_client.v1 import hotswap_pb2, hotswap_pb2_grpc

log = logging.getLogger(__name__)

SWAP_TIMEOUT_S = 10.0  # one Swap call: it answers once the swap has started

# Whether the monitor has tripped every deployment of the model (by catalog id).
Tripped = Callable[[str], bool]


@dataclass(frozen=True)
class Moved:
    """One route moved: its name, the model it leaves, the standby and the swap doing it."""

    route: str
    from_model_id: str
    to_model_id: str
    swap_id: str


class Standby:
    """Moves the routes of a tripped model to their standby through `Swap` at the
    hot-swap service at `hotswap_address` (see the module docstring)."""

    def __init__(
        self,
        routes: RouteView,
        catalog: CatalogView,
        hotswap_address: str,
        channels: InternalChannels = PLAINTEXT,
    ) -> None:
        self.routes = routes
        self.catalog = catalog
        self.hotswap_address = hotswap_address
        self.channels = channels

    def routes_of(self, model_id: str) -> list[hotswap_pb2.Route]:
        """The alias and task-type routes whose active model is `model_id`."""
        found = [self.routes.for_alias(alias) for alias in self.routes.aliases()]
        found += [self.routes.for_task(number) for number in TASK_TYPES.values()]
        return [r for r in found if r is not None and r.model_id == model_id]

    def standby_of(self, route: hotswap_pb2.Route, tripped: Tripped) -> str | None:
        """The catalog id of the route's first healthy fallback; None when none is."""
        names = list(route.fallback_models) or self.routes.fallbacks_of(route.model_id)
        for name in names:
            if "/" in name:
                model_id = name
            else:  # an alias: the model its route names now
                aliased = self.routes.for_alias(name)
                model_id = aliased.model_id if aliased is not None else ""
            entry = self.catalog.find(model_id) if model_id else None
            if (
                entry is not None
                and model_id != route.model_id
                and servable(entry)
                and not tripped(model_id)
            ):
                return model_id
        return None

    async def move(self, model_id: str, tripped: Tripped) -> list[Moved]:
        """Every route of `model_id` swapped to its standby; the moves started. Raises
        `FailedPrecondition` naming the routes that have no healthy standby, or the
        hot-swap service's error, after starting the moves it could."""
        moves: list[tuple[hotswap_pb2.Route, str]] = []
        stranded: list[str] = []
        for route in self.routes_of(model_id):
            target = self.standby_of(route, tripped)
            if target is None:
                stranded.append(describe(route))
            else:
                moves.append((route, target))
        moved: list[Moved] = []
        problems: list[str] = []
        if moves:
            async with self.channels.open(self.hotswap_address, CHANNEL_OPTIONS) as channel:
                stub = hotswap_pb2_grpc.HotSwapServiceStub(channel)
                for route, target in moves:
                    name = describe(route)
                    request = hotswap_pb2.SwapRequest(
                        alias=route.alias, task_type=route.task_type, target_model_id=target
                    )
                    try:
                        with remote_errors():
                            status = await stub.Swap(
                                request, metadata=metadata_with_trace(), timeout=SWAP_TIMEOUT_S
                            )
                    except ModelyardError as err:
                        problems.append(f"{name}: swap to '{target}' refused: {err.message}")
                        continue
                    moved.append(Moved(name, model_id, target, status.swap_id))
                    log.info(
                        "health: %s moves from %s to its standby %s (swap %s)",
                        name,
                        model_id,
                        target,
                        status.swap_id,
                    )
        problems += [f"{name}: no healthy fallback to stand in" for name in stranded]
        if problems:
            raise FailedPrecondition("; ".join(problems))
        return moved
