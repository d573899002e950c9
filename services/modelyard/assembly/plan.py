"""What this process will run, worked out once from the settings.

`plan_backends` pairs every active backend with its kind, its models directory
(one rule: `Settings.models_dir_for`) and, for Ollama, whether the daemon
answered the one probe at start. Engines and discovery sources are both built
from these plans, so the two can never disagree about a directory or a name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from modelyard.assembly.kinds import BackendKind, kind_of
from modelyard.assembly.settings import Settings
from modelyard.backends.engine import Engine
from modelyard.config import Backend, OllamaBackend
from modelyard.discovery.api_providers import ApiProvidersSource, HostedBackendKey
from modelyard.registry.discovery_loop import SourceBinding
from modelyard.security.secrets import ProviderKeys
from modelyard_client.v1 import common_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendPlan:
    """One configured backend, ready to become an engine and a discovery source."""

    name: str
    backend: Backend
    kind: BackendKind
    settings: Settings
    models_dir: Path
    answering: bool = True  # Ollama: the daemon answered at start
    keys: ProviderKeys | None = None  # the process's provider keys, re-read on SIGHUP

    def secret(self, field: str) -> Callable[[], str] | None:
        """The current value of this backend's secret `field` (``api_key``), asked on each
        call; None when the field names no variable (or no keys are held)."""
        references = self.settings.config.security.secrets.references
        name = references.get(f"backends.{self.name}.{field}")
        if self.keys is None or name is None:
            return None
        return self.keys.key(name).value

    def share(self, bound: int, at_least: int = 1) -> int:
        """This process's part of a remote backend's `bound` (`max_concurrency`, and
        `max_queue` with `at_least` 0): the host's gateway processes (`up --workers N`)
        each call the provider from their own engines, so each holds `bound` // N (at
        least `at_least`), together no more than `bound` once it is N or more."""
        return max(at_least, bound // self.settings.gateway_processes)

    @property
    def not_served(self) -> str | None:
        """Why no engine serves this backend, or None."""
        if self.kind.engine is None:
            return f"{self.name} (kind {self.backend.kind}): no engine for this kind yet"
        if not self.answering:
            return f"{self.name} (kind {self.backend.kind}): did not answer at start"
        return None


async def plan_backends(settings: Settings, keys: ProviderKeys | None = None) -> list[BackendPlan]:
    """Every active backend's plan; Ollama daemons are probed once, here. `keys`: where
    the engines read their provider keys on each call (`modelyard.security.secrets`)."""
    probe = settings.discover_ollama and bool(
        {"registry", "backend-openai-compat"} & set(settings.roles)
    )
    plans = []
    for name, backend in settings.config.active_backends().items():
        answering = True
        if isinstance(backend, OllamaBackend):
            answering = probe and await _answers(f"{backend.endpoint.rstrip('/')}/api/tags")
        own_dir: Path | None = getattr(backend, "models_dir", None)
        plans.append(
            BackendPlan(
                name,
                backend,
                kind_of(backend),
                settings,
                settings.models_dir_for(own_dir),
                answering,
                keys,
            )
        )
    for plan in plans:
        if plan.kind.engine is None:
            log.warning("configured backend %s", plan.not_served)
    return plans


def engines_for(plans: list[BackendPlan], roles: tuple[str, ...]) -> list[Engine]:
    """The engines the roles of this process host."""
    engines = []
    for plan in plans:
        if plan.kind.engine is not None and plan.kind.role in roles:
            engine = plan.kind.engine(plan)
            if engine is not None:
                engines.append(engine)
    return engines


def discovery_for(
    plans: list[BackendPlan], engines: list[Engine], endpoint: str
) -> list[SourceBinding]:
    """The registry's discovery sources. Models of a backend whose engine runs in this
    process (`engines`, reached at `endpoint`) get that deployment at once; other
    backends' deployments come with their own announcement."""
    here = {engine.backend: engine.kind for engine in engines}

    def deployed(plan: BackendPlan) -> tuple[common_pb2.Deployment, ...]:
        kind = here.get(plan.name)
        if kind is None:
            return ()
        return (common_pb2.Deployment(backend=kind, endpoint=endpoint),)

    bindings = []
    hosted: dict[str, HostedBackendKey] = {}
    for plan in plans:
        if plan.kind.discovery is not None:
            source = plan.kind.discovery(plan)
            if source is not None:
                bindings.append(SourceBinding(source, deployed(plan)))
        api_key = getattr(plan.backend, "api_key", None)
        if plan.kind.hosted_catalog and api_key:
            hosted[plan.name] = HostedBackendKey(plan.backend.kind, api_key)
    if hosted:
        # No deployments: a hosted model is routable once its engine announces it.
        bindings.append(SourceBinding(ApiProvidersSource(hosted)))
    return bindings


async def _answers(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=0.5)) as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
