"""What the dashboard shows, as one JSON-ready dict: `dashboard_data(sources)`.

Each part is read from the component that owns it, never kept a second time here:

- ``models``: `GetModelMetrics`'s models (the catalog's and any other with attempts in the
  gateway's window, `gateway/metrics.py`), each with its catalog health and reason (what
  the health monitor wrote), its window's figures, the cost per hour at the window's pace
  (the alert rule's `cost_per_hour_usd`), and each deployment with its health, whether
  the health monitor has tripped it, and its own figures;
- ``totals``: the figures of every model's attempts together;
- ``routes``: the gateway's route copy (`RouteView`): what each alias, task type or
  model's fallback list points at, and the split dividing it (an A/B test, a canary);
- ``swaps`` and ``ab_tests``: the hot-swap service's (`hotswap_readout.py`), the tests
  with their confidence as `GetABTest` answers it;
- ``alerts``: the incidents open now and the latest firings and resolutions (`Alerts`).

The page keeps the history its charts draw; this is one reading, now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from modelyard.dashboard.hotswap_readout import HotSwapReadout
from modelyard.enum_values import value_name
from modelyard.gateway.alerts import Alerts, cost_per_hour_usd
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.health_monitor import HealthMonitor
from modelyard.gateway.metrics import model_metrics
from modelyard.gateway.performance import PerformanceTracker
from modelyard.gateway.route_view import RouteView
from modelyard.hotswap.swaps import phase_name
from modelyard_client.v1 import common_pb2, gateway_pb2, hotswap_pb2, selector_pb2

RECENT_ALERTS = 20  # the latest firings and resolutions shown, newest first

_HEALTH = common_pb2.HealthStatus.DESCRIPTOR
_TASK = selector_pb2.TaskType.DESCRIPTOR
_SPLIT_KIND = hotswap_pb2.Split.Kind.DESCRIPTOR


@dataclass
class DashboardSources:
    """The components a reading draws from; those a process lacks are None (no routes
    without a hot-swap service, no alerts or health checks until the catalog synced)."""

    catalog: CatalogView
    tracker: PerformanceTracker
    routes: RouteView | None = None
    hotswap: HotSwapReadout | None = None
    alerts: Alerts | None = None
    health: HealthMonitor | None = None
    clock: Callable[[], float] = field(default=time.time)


async def dashboard_data(sources: DashboardSources) -> dict[str, Any]:
    """One reading of everything the dashboard shows (see the module docstring)."""
    metrics = model_metrics(sources.tracker, sources.catalog, gateway_pb2.GetModelMetricsRequest())
    models = [_model(m, sources) for m in metrics.models]
    totals = sources.tracker.provider_figures(m.model_id for m in metrics.models)
    swaps = await sources.hotswap.running_swaps() if sources.hotswap else []
    tests = await sources.hotswap.ab_tests() if sources.hotswap else []
    return {
        "generated_at": sources.clock(),
        "window_s": totals.window_s,
        "models": models,
        "totals": {
            "requests": totals.requests,
            "errors": totals.errors,
            "error_rate": totals.error_rate,
            "latency_ms_p95": totals.latency_ms_p95,
            "cost_per_hour_usd": cost_per_hour_usd(
                totals.cost_per_request_usd, totals.succeeded, totals.window_s
            ),
        },
        "routes": _routes(sources.routes),
        "swaps": [_swap(s) for s in swaps],
        "ab_tests": [_ab_test(t) for t in tests],
        "alerts": _alerts(sources.alerts),
    }


def _figures(f: gateway_pb2.WindowFigures) -> dict[str, Any]:
    return {
        "requests": f.requests,
        "errors": f.errors,
        "error_rate": f.error_rate,
        "latency_ms_p50": f.latency_ms_p50,
        "latency_ms_p95": f.latency_ms_p95,
        "ttft_ms_p50": f.ttft_ms_p50,
        "tokens_per_second": f.tokens_per_second,
        "requests_per_second": f.requests_per_second,
        "cost_per_request_usd": f.cost_per_request_usd,
        "cost_per_hour_usd": cost_per_hour_usd(
            f.cost_per_request_usd, f.requests - f.errors, f.window_s
        ),
    }


def _health(status: int) -> str:
    return value_name(_HEALTH, status).removeprefix("HEALTH_STATUS_").lower()


def _model(m: gateway_pb2.ModelMetrics, sources: DashboardSources) -> dict[str, Any]:
    entry = sources.catalog.find(m.model_id)
    live = {d.endpoint: d.figures for d in m.deployments}
    declared = {d.endpoint: d for d in entry.deployments} if entry is not None else {}
    deployments = []
    for endpoint in dict.fromkeys([*declared, *live]):  # the catalog's first, in its order
        d = declared.get(endpoint)
        deployments.append(
            {
                "endpoint": endpoint,
                "backend": d.backend if d is not None else "",
                "health": _health(d.health) if d is not None else "",
                "tripped": sources.health is not None
                and sources.health.tripped(m.model_id, endpoint),
                **_figures(live.get(endpoint, gateway_pb2.WindowFigures())),
            }
        )
    return {
        "id": m.model_id,
        "provider": m.provider,
        "in_catalog": entry is not None,
        "health": _health(entry.health) if entry is not None else "",
        "health_reason": entry.health_reason if entry is not None else "",
        **_figures(m.figures),
        "deployments": deployments,
    }


def _routes(routes: RouteView | None) -> list[dict[str, Any]]:
    if routes is None:
        return []
    found = []
    for route in routes.routes():
        split = route.split
        found.append(
            {
                "alias": route.alias,
                "task_type": (
                    value_name(_TASK, route.task_type).removeprefix("TASK_TYPE_").lower()
                    if route.task_type
                    else ""
                ),
                "for_model": route.for_model,
                "model_id": route.model_id,
                "fallback_models": list(route.fallback_models),
                "split": (
                    {
                        "id": split.id,
                        "kind": value_name(_SPLIT_KIND, split.kind).removeprefix("KIND_").lower(),
                        "arms": [
                            {"name": a.name, "model_id": a.model_id, "weight": a.weight}
                            for a in split.arms
                        ],
                    }
                    if split.arms
                    else None
                ),
            }
        )
    # Aliases first, then task types, then fallback lists.
    return sorted(
        found,
        key=lambda r: (
            not r["alias"],
            not r["task_type"],
            r["alias"],
            r["task_type"],
            r["for_model"],
        ),
    )


def _time(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9 if stamp.seconds or stamp.nanos else 0.0


def _swap(s: hotswap_pb2.SwapStatus) -> dict[str, Any]:
    return {
        "swap_id": s.swap_id,
        "alias": s.alias,
        "task_type": (
            value_name(_TASK, s.task_type).removeprefix("TASK_TYPE_").lower() if s.task_type else ""
        ),
        "from_model_id": s.from_model_id,
        "to_model_id": s.to_model_id,
        "phase": phase_name(s.phase),
        "canary": s.canary,
        "canary_percent": s.canary_percent,
        "started_at": _time(s.started_at),
    }


def _ab_test(t: hotswap_pb2.ABTest) -> dict[str, Any]:
    results = {r.name: r for r in t.results}
    arms = []
    for arm in t.arms:
        r = results.get(arm.name, hotswap_pb2.ABArmResult())
        arms.append(
            {
                "name": arm.name,
                "model_id": arm.model_id,
                "weight": arm.weight,
                "requests": r.requests,
                "errors": r.errors,
                "error_rate": r.error_rate,
                "latency_ms_p50": r.latency_ms_p50,
                "latency_ms_p95": r.latency_ms_p95,
                "cost_usd_per_request": r.cost_usd_per_request,
                "mean_score": r.mean_score,
            }
        )
    return {
        "id": t.id,
        "alias": t.alias,
        "metric": t.metric,
        "running": t.running,
        "winner": t.winner,
        "confidence": t.confidence,
        "alpha": t.alpha,
        "arms": arms,
        "ended_reason": t.ended_reason,
        "started_at": _time(t.started_at),
    }


def _alerts(alerts: Alerts | None) -> dict[str, list[dict[str, Any]]]:
    if alerts is None:
        return {"open": [], "recent": []}
    return {
        "open": [
            {
                "rule": b.rule,
                "scope": b.scope,
                "value": b.value,
                "threshold": b.threshold,
                "detail": b.detail,
            }
            for b in alerts.incidents.open.values()
        ],
        "recent": [
            {
                "state": m.state,
                "rule": m.breach.rule,
                "scope": m.breach.scope,
                "at": m.at,
                "text": m.text(),
            }
            for m in list(reversed(alerts.sent))[:RECENT_ALERTS]
        ],
    }
