"""`GetModelMetrics` and `GetProviderMetrics`: this gateway's rolling window of attempts
(`performance.py`) as each model, deployment and provider shows it.

The models listed are the catalog's and any other with attempts in the window (one
unregistered since), those the caller's key may use: a key limited to some models sees
only theirs, and naming another is refused (PermissionDenied). A model or provider with
no attempt in the window has zero figures, not an error; one neither in the catalog
nor in the window is NotFound, named.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.performance import PerformanceTracker
from modelyard.gateway.request_limits import check_bounds
from modelyard.security.principal import current_principal
from modelyard.security.scopes import check_model, may_use_model
from modelyard_client.errors import ModelNotFound, NotFound
from modelyard_client.v1 import gateway_pb2


def model_metrics(
    tracker: PerformanceTracker, catalog: CatalogView, request: gateway_pb2.GetModelMetricsRequest
) -> gateway_pb2.GetModelMetricsResponse:
    check_bounds(request)
    if request.model:
        check_model(current_principal(), request.model, request.model)
        if request.model not in _providers(tracker, catalog, [request.model]):
            raise ModelNotFound(request.model, "the catalog nor this gateway's window")
        model_ids = [request.model]
    else:
        model_ids = sorted(_providers(tracker, catalog, _known(tracker, catalog)))
    providers = _providers(tracker, catalog, model_ids)
    return gateway_pb2.GetModelMetricsResponse(
        models=[
            gateway_pb2.ModelMetrics(
                model_id=model_id,
                provider=providers[model_id],
                figures=tracker.figures(model_id).proto(),
                deployments=[
                    gateway_pb2.DeploymentMetrics(endpoint=endpoint, figures=figures.proto())
                    for endpoint, figures in tracker.deployment_figures(model_id).items()
                ],
            )
            for model_id in model_ids
        ]
    )


def provider_metrics(
    tracker: PerformanceTracker,
    catalog: CatalogView,
    request: gateway_pb2.GetProviderMetricsRequest,
) -> gateway_pb2.GetProviderMetricsResponse:
    check_bounds(request)
    by_provider: dict[str, list[str]] = {}
    known = _providers(tracker, catalog, _known(tracker, catalog))
    for model_id, provider in sorted(known.items()):
        by_provider.setdefault(provider, []).append(model_id)
    if request.provider:
        if request.provider not in by_provider:
            raise NotFound(
                f"provider '{request.provider}' has no model in the catalog nor in this "
                "gateway's window"
            )
        by_provider = {request.provider: by_provider[request.provider]}
    return gateway_pb2.GetProviderMetricsResponse(
        providers=[
            gateway_pb2.ProviderMetrics(
                provider=provider,
                figures=tracker.provider_figures(model_ids).proto(),
                model_ids=model_ids,
            )
            for provider, model_ids in sorted(by_provider.items())
        ]
    )


def _known(tracker: PerformanceTracker, catalog: CatalogView) -> list[str]:
    """The catalog's models and those with attempts in the window."""
    return list(dict.fromkeys([*(e.id for e in catalog.models()), *tracker.model_ids()]))


def _providers(
    tracker: PerformanceTracker, catalog: CatalogView, model_ids: Iterable[str]
) -> dict[str, str]:
    """Each of `model_ids` the caller may use and the catalog or the window knows, with
    its provider (the catalog entry's, else the one its attempts were recorded with)."""
    principal = current_principal()
    found: dict[str, str] = {}
    for model_id in model_ids:
        if not may_use_model(principal, model_id, model_id):
            continue
        try:
            found[model_id] = catalog.get(model_id).provider
        except ModelNotFound:
            if tracker.recorded(model_id):
                found[model_id] = tracker.provider_of(model_id)
    return found
