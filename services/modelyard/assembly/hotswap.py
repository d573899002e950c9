"""The hot-swap service's parts, built from the settings: its route table and its swaps."""

from __future__ import annotations

import logging

from modelyard.assembly.settings import Settings
from modelyard.gateway.backend_pool import BackendPool
from modelyard.hotswap.routes import RouteTable
from modelyard.hotswap.store import HotSwapStore
from modelyard.hotswap.swaps import Catalog, Swaps, SwapSettings
from modelyard.hotswap.validation import BackendValidator
from modelyard.route_keys import TASK_TYPES

log = logging.getLogger(__name__)


def route_table(settings: Settings) -> RouteTable:
    """The route table in the data directory, seeded with the routes the configuration names."""
    routes = RouteTable(HotSwapStore(settings.data_dir / "hotswap.sqlite3"))
    config = settings.config.hot_swap
    tasks = {TASK_TYPES[name]: model for name, model in config.task_routes.items()}
    for key in routes.seed(config.routes, tasks):
        log.info("route %s added from the configuration", key)
    return routes


def swap_engine(
    settings: Settings, routes: RouteTable, catalog: Catalog, backends: BackendPool
) -> Swaps:
    """Swaps over `routes`, validating targets through `backends`, with the file's defaults."""
    config = settings.config.hot_swap
    defaults = SwapSettings(
        enabled=config.enabled,
        grace_period_s=config.grace_period_ms / 1000,
        validation_timeout_s=config.validation_timeout_ms / 1000,
    )
    return Swaps(routes, routes.store, catalog, BackendValidator(backends), defaults)
