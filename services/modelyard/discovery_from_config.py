"""Which discovery sources the registry runs, as the configuration says.

- local backend → its GGUF models directory;
- ollama backends that answered at start (and `discover: true`) → Ollama's API;
- coreml backends → their model directory (metadata works on any OS);
- `openai_compat` entries → their `/v1/models`;
- hosted providers with a key → the maintained data file of their models.

When this process also hosts the backend that serves a source's models, the
models are given that deployment; otherwise the backend's own announcement
brings it.
"""

from __future__ import annotations

from pathlib import Path

from modelyard.config import (
    CoreMLBackend,
    HostedBackend,
    LocalBackend,
    ModelyardConfig,
    OllamaBackend,
    OpenAICompatBackend,
)
from modelyard.discovery import (
    ApiProvidersSource,
    CoreMLDirectorySource,
    GGUFDirectorySource,
    OllamaSource,
    OpenAICompatSource,
)
from modelyard.engines_from_config import plan_engines
from modelyard.registry.discovery_loop import SourceBinding
from modelyard.v1 import common_pb2


def discovery_bindings(
    config: ModelyardConfig,
    *,
    models_dir: Path,
    ollama_answering: set[str],
    local_endpoints: dict[str, str],
) -> list[SourceBinding]:
    """`local_endpoints`: backend kind → this process's endpoint, for the kinds it hosts."""

    def deployed(kind: str) -> tuple[common_pb2.Deployment, ...]:
        endpoint = local_endpoints.get(kind)
        if endpoint is None:
            return ()
        return (common_pb2.Deployment(backend=kind, endpoint=endpoint),)

    bindings: list[SourceBinding] = []
    hosted_keys: dict[str, str] = {}
    providers = {p.name: p for p in plan_engines(config).providers}
    for name, backend in config.active_backends().items():
        if isinstance(backend, LocalBackend):
            bindings.append(SourceBinding(GGUFDirectorySource(models_dir), deployed("local")))
        elif isinstance(backend, OllamaBackend):
            if backend.discover and name in ollama_answering:
                source = OllamaSource(backend.endpoint, timeout_s=backend.timeout_ms / 1000)
                bindings.append(SourceBinding(source, deployed("openai_compat")))
        elif isinstance(backend, CoreMLBackend):
            directory = backend.models_dir or config.server.models_dir or models_dir
            bindings.append(SourceBinding(CoreMLDirectorySource(directory), deployed("coreml")))
        elif isinstance(backend, OpenAICompatBackend) and name in providers:
            source_oc = OpenAICompatSource(providers[name])
            bindings.append(SourceBinding(source_oc, deployed("openai_compat")))
        elif isinstance(backend, HostedBackend) and backend.api_key:
            hosted_keys[backend.kind] = backend.api_key
    if hosted_keys:
        # No deployments: a hosted model is routable once its engine announces it.
        bindings.append(SourceBinding(ApiProvidersSource(hosted_keys)))
    return bindings
