"""Assemble services into one running gRPC server.

`modelyard up` runs every role in one process on one address (the embedded
default); `modelyard serve ROLE` runs one role per process for the split
deployment, where backends and the gateway find the registry by address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from grpc_health.v1 import health_pb2

from modelyard.backends.engine import Engine
from modelyard.backends.host import BackendHost
from modelyard.backends.servicer import backend_binding
from modelyard.config import CoreMLBackend, LocalBackend, ModelyardConfig, default_config
from modelyard.discovery_from_config import discovery_bindings
from modelyard.engines_from_config import apply_profiles, ollama_endpoint, plan_engines
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.balancing import Balancer
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.limits import ModelLimits
from modelyard.gateway.servicer import gateway_binding
from modelyard.hotswap.servicer import hotswap_binding
from modelyard.limiter_from_config import limiter_config
from modelyard.ratelimit import LimiterConfig
from modelyard.registry.catalog import Catalog
from modelyard.registry.discovery_loop import DiscoveryLoop
from modelyard.registry.servicer import Registry, registry_binding
from modelyard.registry.store import CatalogStore
from modelyard.selector.candidates import CandidatePool
from modelyard.selector.selection import Selector
from modelyard.selector.servicer import selector_binding
from modelyard.selector.settings_from_config import selection_settings
from modelyard.server.runtime import RunningServer, ServiceBinding, start_server
from modelyard.v1 import backend_pb2, common_pb2

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def backend_service_name() -> str:
    return str(backend_pb2.DESCRIPTOR.services_by_name["BackendService"].full_name)


log = logging.getLogger(__name__)

ROLES = (
    "registry",
    "selector",
    "hotswap",
    "gateway",
    "backend-local",
    "backend-openai-compat",
    "backend-coreml",
)
DEFAULT_ADDRESS = "127.0.0.1:50051"


def default_data_dir() -> Path:
    env = os.environ.get("MODELYARD_DATA_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "modelyard"


@dataclass
class StackOptions:
    listen: str = DEFAULT_ADDRESS
    roles: tuple[str, ...] = ROLES
    data_dir: Path = field(default_factory=default_data_dir)
    models_dir: Path | None = None
    registry_address: str | None = None  # required when the registry role is elsewhere
    advertise: str | None = None  # how others reach this server's backends
    assemble_default_model: bool = True
    discover_ollama: bool = True
    # The configuration file's contents; None: the built-in default, which
    # enables providers by the keys in `openai_compat_env` (None: os.environ).
    config: ModelyardConfig | None = None
    openai_compat_env: dict[str, str] | None = None
    # Engines to host besides the ones the roles bring (embedding modelyard as a library).
    engines: list[Engine] = field(default_factory=list)
    # The gateway's limiter; None: from the config's rate_limits and the environment.
    limiter: LimiterConfig | None = None
    # Run the registry's discovery loop (first pass at start, then on the interval).
    discovery: bool = True
    # How the gateway spreads a model's requests over its deployments, and the
    # region it prefers with "region_affinity".
    balancing: str = "least_loaded"
    region: str = ""

    def resolved_config(self) -> ModelyardConfig:
        if self.config is not None:
            return self.config
        return default_config(self.openai_compat_env)

    def resolved_models_dir(self, config: ModelyardConfig) -> Path:
        local = config.active_backends().get("local")
        from_config = local.models_dir if isinstance(local, LocalBackend) else None
        return (
            self.models_dir or from_config or config.server.models_dir or self.data_dir / "models"
        )


@dataclass
class Stack:
    server: RunningServer
    address: str
    catalog: Catalog | None = None
    view: CatalogView | None = None
    host: BackendHost | None = None
    pool: BackendPool | None = None
    limits: ModelLimits | None = None
    discovery: DiscoveryLoop | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _end_watches(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.catalog:
            self.catalog.end_watches()

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING, end watches, let in-flight calls finish within `grace_s`, release all."""
        self.server.before_stop.append(self._end_watches)
        await self.server.drain(grace_s)
        if self.host:
            await self.host.close()
        if self.pool:
            await self.pool.close()
        if self.limits:
            await self.limits.close()
        if self.catalog:
            self.catalog.close()


async def start_stack(opts: StackOptions) -> Stack:
    unknown = set(opts.roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; choose from {', '.join(ROLES)}")
    bindings: list[ServiceBinding] = []
    catalog = view = host = pool = limits = None
    registry = None
    config = opts.resolved_config()
    if "registry" in opts.roles:
        catalog = Catalog(CatalogStore(opts.data_dir / "registry.sqlite3"))
        registry = Registry(catalog)
        bindings.append(registry_binding(registry))
    if "selector" in opts.roles or "gateway" in opts.roles:
        # One live catalog copy feeds both the selector and the gateway.
        view = live = CatalogView()
        selector = Selector(
            CandidatePool(live.models, lambda: live.revision),
            selection_settings(config.selection),
        )
        if "selector" in opts.roles:
            bindings.append(selector_binding(selector))
        if "gateway" in opts.roles:
            pool = BackendPool()
            limits = ModelLimits.from_config(opts.limiter or limiter_config(config))
            core = GatewayCore(
                live,
                pool,
                limits,
                selector=selector,
                balancer=Balancer(opts.balancing, opts.region),
            )
            bindings.append(gateway_binding(core))
    if "hotswap" in opts.roles:
        bindings.append(hotswap_binding())
    ollama_answering = await _ollama_answering(opts, config)
    found = await _engines(opts, config, ollama_answering)
    engines = [*found, *opts.engines]
    if engines:
        host = BackendHost(engines)
        bindings.append(backend_binding(host))

    server = await start_server(bindings, opts.listen)
    address = f"{opts.listen.rsplit(':', 1)[0]}:{server.port}"
    stack = Stack(server, address, catalog, view, host, pool, limits)
    registry_address = address if catalog else opts.registry_address
    # How other services reach the backends served here.
    advertise = opts.advertise or address.replace("0.0.0.0", "127.0.0.1")
    if (view or host) and not registry_address:
        await stack.stop(0)
        raise ValueError("this role needs the registry's address (--registry)")
    try:
        if host is not None:
            await host.start()
            assert registry_address
            entries = host.models(advertise)
            apply_profiles(entries, config)
            await host.announce(registry_address, entries)
            if pool is not None:
                pool.add_in_process(advertise, host)
            status, reason = host.health()
            if status == common_pb2.HEALTH_STATUS_UNAVAILABLE:
                # Nothing here can serve (CoreML off macOS): say so to health checkers.
                log.warning("backend %s cannot serve: %s", host.name, reason)
                await server.health.set(backend_service_name(), NOT_SERVING)
        if registry is not None and opts.discovery:
            local_endpoints = {e.kind: advertise for e in host.engines} if host else {}
            sources = discovery_bindings(
                config,
                models_dir=opts.resolved_models_dir(config),
                ollama_answering=ollama_answering,
                local_endpoints=local_endpoints,
            )
            if sources:
                loop = DiscoveryLoop(registry.catalog, sources, config.registry.discovery_interval)
                registry.discovery = stack.discovery = loop
                stack.tasks.append(asyncio.create_task(loop.run_forever()))
        if view is not None:
            assert registry_address
            stack.tasks.append(asyncio.create_task(view.follow(registry_address)))
            await asyncio.wait_for(view.synced.wait(), timeout=30)
    except BaseException:
        await stack.stop(0)
        raise
    return stack


async def _ollama_answering(opts: StackOptions, config: ModelyardConfig) -> set[str]:
    """The configured Ollama backends that answer now (probed once, at start)."""
    if not opts.discover_ollama or not {"registry", "backend-openai-compat"} & set(opts.roles):
        return set()
    plan = plan_engines(config)
    return {
        name
        for name, ollama in plan.ollama
        if await _answers(f"{ollama.endpoint.rstrip('/')}/api/tags")
    }


async def _engines(
    opts: StackOptions, config: ModelyardConfig, ollama_answering: set[str]
) -> list[Engine]:
    """The engines this process's roles run."""
    engines: list[Engine] = []
    plan = plan_engines(config)
    if "backend-local" in opts.roles and plan.local is not None:
        from modelyard.backends.local.llama_engine import LlamaEngine
        from modelyard.backends.local.model_files import ensure_default_model

        models_dir = opts.resolved_models_dir(config)
        if opts.assemble_default_model and plan.local.assemble_default_model:
            ensure_default_model(models_dir)
        engines.append(
            LlamaEngine(models_dir, n_ctx=plan.local.n_ctx, max_loaded=plan.local.max_loaded)
        )
    if "backend-openai-compat" in opts.roles:
        from modelyard.backends.openai_compat.engine import OpenAICompatEngine

        providers = list(plan.providers)
        for name, ollama in plan.ollama:
            if name in ollama_answering:
                providers.append(ollama_endpoint(name, ollama))
        engines.extend(OpenAICompatEngine(p) for p in providers)
    if "backend-coreml" in opts.roles:
        from modelyard.backends.coreml.engine import CoreMLEngine

        for backend in config.active_backends().values():
            if isinstance(backend, CoreMLBackend):
                directory = backend.models_dir or opts.resolved_models_dir(config)
                engines.append(CoreMLEngine(directory))
    return engines


async def _answers(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=0.5)) as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
