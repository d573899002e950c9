"""The hot-swap service's parts, built from the settings: its route table, swaps and A/B tests."""

from __future__ import annotations

import logging

from modelyard.assembly.settings import Settings
from modelyard.gateway.backend_pool import BackendPool
from modelyard.hotswap.abtests import ABDefaults, ABTests
from modelyard.hotswap.canary import CanaryPolicy
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Catalog, Swaps, SwapSettings
from modelyard.hotswap.validation import BackendValidator
from modelyard.meters.instruments import Instrument
from modelyard.route_keys import TASK_TYPES

log = logging.getLogger(__name__)


def route_table(settings: Settings) -> RouteTable:
    """The route table (the data directory's, or on PostgreSQL), seeded with the routes the
    configuration names."""
    routes = RouteTable(HotSwapStore(settings.store_at("hotswap.sqlite3")))
    config = settings.config.hot_swap
    tasks = {TASK_TYPES[name]: model for name, model in config.task_routes.items()}
    for key in routes.seed(config.routes, tasks):
        log.info("route %s added from the configuration", key)
    return routes


def swap_engine(
    settings: Settings,
    routes: RouteTable,
    catalog: Catalog,
    backends: BackendPool,
    phases: Instrument | None = None,
) -> Swaps:
    """Swaps over `routes`, validating targets through `backends`, with the file's defaults."""
    config = settings.config.hot_swap
    defaults = SwapSettings(
        enabled=config.enabled,
        grace_period_s=config.grace_period_ms / 1000,
        validation_timeout_s=config.validation_timeout_ms / 1000,
        canary=CanaryPolicy(
            steps=tuple(config.canary.steps),
            step_requests=config.canary.step_requests,
            step_s=config.canary.step_ms / 1000,
            max_error_rate_increase=config.canary.max_error_rate_increase,
            max_latency_p95_increase=config.canary.max_latency_p95_increase,
            min_latency_increase_ms=config.canary.min_latency_increase_ms,
            rollback_on_failure=config.rollback_on_failure,
        ),
        standby=config.standby,
        when_budget_short=config.when_budget_short,
    )
    validator = BackendValidator(backends)
    return Swaps(
        routes, routes.store, catalog, validator, defaults, loader=validator, phases=phases
    )


def ab_tests(settings: Settings, routes: RouteTable, catalog: Catalog, swaps: Swaps) -> ABTests:
    """A/B tests over `routes`, promoting winners through `swaps`, with the file's defaults."""
    config = settings.config.hot_swap.ab_tests
    defaults = ABDefaults(alpha=config.alpha, min_samples_per_arm=config.min_samples_per_arm)
    return ABTests(routes, routes.store, catalog, swaps, defaults)
