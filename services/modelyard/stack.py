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

from modelyard.backends.engine import Engine
from modelyard.backends.host import BackendHost
from modelyard.backends.servicer import backend_binding
from modelyard.gateway.backend_pool import BackendPool
from modelyard.gateway.catalog_view import CatalogView
from modelyard.gateway.core import GatewayCore
from modelyard.gateway.servicer import gateway_binding
from modelyard.hotswap.servicer import hotswap_binding
from modelyard.registry.catalog import Catalog
from modelyard.registry.servicer import Registry, registry_binding
from modelyard.registry.store import CatalogStore
from modelyard.selector.servicer import selector_binding
from modelyard.server.runtime import RunningServer, ServiceBinding, start_server

log = logging.getLogger(__name__)

ROLES = ("registry", "selector", "hotswap", "gateway", "backend-local", "backend-openai-compat")
DEFAULT_ADDRESS = "127.0.0.1:50051"
OLLAMA_URL = "http://127.0.0.1:11434"


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
    openai_compat_env: dict[str, str] | None = None  # None: os.environ
    n_ctx: int = 2048
    # Engines to host besides the ones the roles bring (embedding modelyard as a library).
    engines: list[Engine] = field(default_factory=list)

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "models"


@dataclass
class Stack:
    server: RunningServer
    address: str
    catalog: Catalog | None = None
    view: CatalogView | None = None
    host: BackendHost | None = None
    pool: BackendPool | None = None
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
        if self.catalog:
            self.catalog.close()


async def start_stack(opts: StackOptions) -> Stack:
    unknown = set(opts.roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; choose from {', '.join(ROLES)}")
    bindings: list[ServiceBinding] = []
    catalog = view = host = pool = None
    if "registry" in opts.roles:
        catalog = Catalog(CatalogStore(opts.data_dir / "registry.sqlite3"))
        bindings.append(registry_binding(Registry(catalog)))
    if "selector" in opts.roles:
        bindings.append(selector_binding())
    if "hotswap" in opts.roles:
        bindings.append(hotswap_binding())
    if "gateway" in opts.roles:
        view, pool = CatalogView(), BackendPool()
        bindings.append(gateway_binding(GatewayCore(view, pool)))
    engines = [*await _engines(opts), *opts.engines]
    if engines:
        host = BackendHost(engines)
        bindings.append(backend_binding(host))

    server = await start_server(bindings, opts.listen)
    address = f"{opts.listen.rsplit(':', 1)[0]}:{server.port}"
    stack = Stack(server, address, catalog, view, host, pool)
    registry_address = address if catalog else opts.registry_address
    if (view or host) and not registry_address:
        await stack.stop(0)
        raise ValueError("this role needs the registry's address (--registry)")
    try:
        if host is not None:
            await host.start()
            advertise = opts.advertise or address.replace("0.0.0.0", "127.0.0.1")
            assert registry_address
            await host.announce(registry_address, advertise)
            if pool is not None:
                pool.add_in_process(advertise, host)
        if view is not None:
            assert registry_address
            stack.tasks.append(asyncio.create_task(view.follow(registry_address)))
            await asyncio.wait_for(view.synced.wait(), timeout=30)
    except BaseException:
        await stack.stop(0)
        raise
    return stack


async def _engines(opts: StackOptions) -> list[Engine]:
    engines: list[Engine] = []
    if "backend-local" in opts.roles:
        from modelyard.backends.local.llama_engine import LlamaEngine
        from modelyard.backends.local.model_files import ensure_default_model

        if opts.assemble_default_model:
            ensure_default_model(opts.resolved_models_dir)
        engines.append(LlamaEngine(opts.resolved_models_dir, n_ctx=opts.n_ctx))
    if "backend-openai-compat" in opts.roles:
        from modelyard.backends.openai_compat.engine import OpenAICompatEngine
        from modelyard.backends.openai_compat.providers import (
            ProviderEndpoint,
            providers_from_env,
        )

        providers = providers_from_env(opts.openai_compat_env)
        if opts.discover_ollama and await _answers(f"{OLLAMA_URL}/api/tags"):
            # Ollama serves the OpenAI wire format under /v1; its native API
            # (keep_alive load/unload, /api/show metadata) is the ollama backend's.
            providers.append(ProviderEndpoint("ollama", f"{OLLAMA_URL}/v1"))
        engines.extend(OpenAICompatEngine(p) for p in providers)
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
