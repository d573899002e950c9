"""The stack's meters wired to what they read: the gateway's call meter, its alerts, and
where the metrics are served (the scrape endpoint, OTLP export)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from modelyard.assembly.settings import Settings
from modelyard.gateway.alerts import AlertRules, Alerts
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.limits import ModelLimits
from modelyard.gateway.performance import PerformanceTracker
from modelyard.gateway.route_view import RouteView
from modelyard.gateway.webhook import Webhook
from modelyard.meters import Meters
from modelyard.meters.gateway_calls import GatewayCallMeter
from modelyard.meters.otlp import OtlpMetrics
from modelyard.meters.prometheus import start_metrics_listener

if TYPE_CHECKING:
    from modelyard.assembly.stack import Stack


def gateway_call_meter(
    meters: Meters, catalog: CatalogView, routes: RouteView | None
) -> GatewayCallMeter:
    """What records each gateway answer: the provider of the answering model from the live
    catalog, a requested name known when the catalog or the routes hold it."""

    def provider_of(model_id: str) -> str:
        entry = catalog.find(model_id)
        return entry.provider if entry is not None else ""

    def known(name: str) -> bool:
        return catalog.find(name) is not None or (
            routes is not None and routes.for_alias(name) is not None
        )

    return GatewayCallMeter(meters, provider_of, known)


def alerts_for(
    settings: Settings, tracker: PerformanceTracker, limits: ModelLimits, meters: Meters
) -> Alerts:
    """The gateway's alerts: its figures' and budgets' rules, to the webhook when one is set."""
    monitoring = settings.config.monitoring
    rules = AlertRules(
        monitoring.alert_thresholds,
        tracker,
        limits.alerts,
        limits.spend.alert_at,
        lambda: limits.clock(),  # read at each evaluation: tests move the limiter's clock
    )
    hook = monitoring.alert_webhook
    sink = None
    if hook is not None:
        sink = Webhook(hook.url, hook.timeout, hook.max_attempts, meter=meters.alerts)
    return Alerts(rules, monitoring.metrics_interval, sink, meter=meters.alerts)


async def start_metrics(stack: Stack, settings: Settings) -> None:
    """The scrape endpoint at settings.metrics_listen, and OTLP export when the environment
    asks for it (`modelyard.meters.otlp`)."""
    if settings.metrics_listen:
        try:
            stack.metrics_listener = await start_metrics_listener(
                stack.meters, settings.metrics_listen
            )
        except OSError as exc:
            await stack.stop(0)
            raise OSError(
                f"the metrics endpoint cannot listen on {settings.metrics_listen}: {exc} "
                "(--metrics-listen / MODELYARD_METRICS_ADDRESS: another address, or 'off')"
            ) from exc
    otlp = OtlpMetrics.from_env(stack.meters, "modelyard")
    if otlp is not None:
        stack.tasks.append(asyncio.create_task(otlp.run()))
