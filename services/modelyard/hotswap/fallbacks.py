"""Fallback lists set at run time: an alias's, or one model's, stored with the routes.

`SetFallbacks` names an alias (whose route must exist: the list travels
with it through swaps and splits) or a catalog model (its own route, holding
only the list). Each fallback is a catalog id the catalog knows or an alias
with a route; at most `MAX_FALLBACKS`, no repeats, never the model itself.
An empty list clears it. The gateways see the lists through `WatchRoutes`
and try them, in order, after the request's own `fallback_models`.
"""

from __future__ import annotations

from modelyard.catalog_ids import name_problem
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.swaps import Catalog
from modelyard.route_keys import route_key
from modelyard_client.errors import InvalidRequest, ModelNotFound, NotFound
from modelyard_client.v1 import hotswap_pb2

# As many as a request's own `fallback_models` may name.
MAX_FALLBACKS = 8


def set_fallbacks(
    routes: RouteTable, catalog: Catalog, request: hotswap_pb2.SetFallbacksRequest
) -> hotswap_pb2.Route:
    """Check `request` and store its list; the route as it is now."""
    route_key(request.alias, 0, request.for_model)  # one of them, well formed
    if request.for_model:
        try:
            catalog.get(request.for_model)
        except ModelNotFound:
            raise ModelNotFound(request.for_model, "the catalog (for_model)") from None
        own = request.for_model
    else:
        current = routes.find(alias=request.alias)
        if current is None:
            raise NotFound(
                f"no route for alias '{request.alias}': fallbacks follow an alias's route"
            )
        own = current.model_id
    models = list(request.fallback_models)
    if len(models) > MAX_FALLBACKS:
        raise InvalidRequest(
            f"fallback_models has {len(models)} entries; the limit is {MAX_FALLBACKS}",
            field="fallback_models",
        )
    for i, model in enumerate(models):
        where = f"fallback_models[{i}]"
        if model in models[:i]:
            raise InvalidRequest(f"{where} '{model}' is named twice", field=where)
        if model in (own, request.alias):
            raise InvalidRequest(
                f"{where} '{model}' is the model it would stand in for", field=where
            )
        if "/" in model:  # a catalog id
            try:
                catalog.get(model)
            except ModelNotFound:
                raise ModelNotFound(model, f"the catalog ({where})") from None
            continue
        problem = name_problem("the alias", model)
        if problem is not None:
            raise InvalidRequest(f"{where}: {problem}", field=where)
        if routes.find(alias=model) is None:
            raise NotFound(f"{where} names alias '{model}', which has no route")
    return routes.set_fallbacks(request.alias, request.for_model, models)
