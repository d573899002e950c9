"""The table of backend kinds: how each configured backend becomes engines and discovery.

One `BackendKind` per kind of `model_system.backends` entry: the process role
that hosts its engine, how to build that engine, and how discovery finds its
models. Every engine and discovery source is given the backend's *name*, so
catalog ids follow one rule everywhere: ``<backend name>/<provider model name>``
(`modelyard.catalog_ids`). Adding a kind is one entry here, or, from outside the
project, one plug-in under the ``modelyard.engines`` entry-point group
(`modelyard.assembly.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from modelyard.backends.openai_compat.params import GENERIC
from modelyard.backends.openai_compat.providers import ProviderEndpoint, normalise_base_url
from modelyard.config import (
    Backend,
    HostedBackend,
    LocalBackend,
    ModelyardConfig,
    OllamaBackend,
    OpenAICompatBackend,
    PluginBackend,
)
from modelyard.config.unbuilt import NOTICE
from modelyard.discovery.source import DiscoverySource

if TYPE_CHECKING:
    from modelyard.assembly.plan import BackendPlan
    from modelyard.backends.engine import Engine
    from modelyard.backends.tensor.onnx_models import OnnxModelsDir

# Hosted providers that speak the OpenAI wire format, and their public API.
OPENAI_WIRE_HOSTS = {
    "openai": "https://api.openai.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
}

EngineFactory = Callable[["BackendPlan"], "Engine | None"]
SourceFactory = Callable[["BackendPlan"], "DiscoverySource | None"]


@dataclass(frozen=True)
class BackendKind:
    """How one kind of backend is assembled.

    `engine` None: no engine for this kind yet (reported at start, never
    silently dropped). `discovery` None: its models are known only from its
    engine's announcement (or the hosted catalog file, `hosted_catalog`).
    """

    role: str
    engine: EngineFactory | None = None
    discovery: SourceFactory | None = None
    # Its models are listed in discovery/data/api_models.yaml under this kind.
    hosted_catalog: bool = False


# ---- local: GGUF files through llama.cpp ------------------------------------------------
def _local_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.local.llama_engine import LlamaEngine
    from modelyard.backends.local.model_files import ensure_default_model

    backend = _as(plan, LocalBackend)
    if plan.settings.assemble_default_model and backend.assemble_default_model:
        ensure_default_model(plan.models_dir)
    lifecycle = plan.settings.config.hot_swap
    budget_mb = lifecycle.memory_budget_mb
    return LlamaEngine(
        plan.models_dir,
        backend=plan.name,
        n_ctx=backend.n_ctx,
        max_loaded=backend.max_loaded,
        n_gpu_layers=backend.n_gpu_layers,
        parallel_slots=backend.parallel_slots,
        max_queue=backend.max_queue,
        # None: the engine's default, three quarters of the machine's memory.
        memory_budget_bytes=budget_mb * 1024 * 1024 if budget_mb is not None else None,
        idle_timeout_s=lifecycle.idle_timeout_ms / 1000,
        preload=lifecycle.preload,
    )


def _gguf_source(plan: BackendPlan) -> DiscoverySource:
    from modelyard.discovery.gguf_files import GGUFDirectorySource

    return GGUFDirectorySource(plan.models_dir, backend=plan.name)


# ---- ollama: its native API (/api/chat, keep_alive load/unload) through `ollama` ----------
def _ollama_engine(plan: BackendPlan) -> Engine | None:
    from modelyard.backends.ollama.engine import OllamaEngine

    if not plan.answering:
        return None
    backend = _as(plan, OllamaBackend)
    return OllamaEngine(
        plan.name,
        backend.endpoint,
        models=tuple(backend.models),
        discover=backend.discover,
        keep_alive_s=backend.keep_alive,
        timeout_s=backend.timeout_ms / 1000,
        connect_timeout_s=_connect_timeout_s(plan),
        max_concurrency=plan.share(backend.max_concurrency),
        max_queue=plan.share(backend.max_queue, 0),
    )


def _ollama_source(plan: BackendPlan) -> DiscoverySource | None:
    from modelyard.discovery.ollama import OllamaSource

    backend = _as(plan, OllamaBackend)
    if not (backend.discover and plan.answering):
        return None
    return OllamaSource(backend.endpoint, backend=plan.name, timeout_s=backend.timeout_ms / 1000)


# ---- coreml: packages in a directory; prediction on macOS only ---------------------------
def _coreml_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.coreml.engine import CoreMLEngine

    return CoreMLEngine(plan.models_dir, backend=plan.name)


def _coreml_source(plan: BackendPlan) -> DiscoverySource:
    from modelyard.discovery.coreml_files import CoreMLDirectorySource

    return CoreMLDirectorySource(plan.models_dir, backend=plan.name)


# ---- whisper: speech to text in process (faster-whisper); models from its engine -------
def _whisper_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.speech.whisper_engine import WhisperEngine
    from modelyard.config.backends import WhisperBackend

    backend = _as(plan, WhisperBackend)
    lifecycle = plan.settings.config.hot_swap
    budget_mb = lifecycle.memory_budget_mb
    return WhisperEngine(
        backend.models_dir,  # its own key only: None is the packaged model, not models_dir
        backend=plan.name,
        models=backend.models,
        compute_type=backend.compute_type,
        beam_size=backend.beam_size,
        cpu_threads=backend.cpu_threads,
        max_loaded=backend.max_loaded,
        max_queue=backend.max_queue,
        memory_budget_bytes=budget_mb * 1024 * 1024 if budget_mb is not None else None,
        idle_timeout_s=lifecycle.idle_timeout_ms / 1000,
        preload=lifecycle.preload,
    )


# ---- piper: text to speech in process (piper-tts, onnxruntime); voices from its engine ----
def _piper_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.speech.piper_engine import PiperEngine
    from modelyard.config.backends import PiperBackend

    backend = _as(plan, PiperBackend)
    lifecycle = plan.settings.config.hot_swap
    budget_mb = lifecycle.memory_budget_mb
    return PiperEngine(
        backend.models_dir,  # its own key only: None is the packaged voice, not models_dir
        backend=plan.name,
        models=backend.models,
        cpu_threads=backend.cpu_threads,
        max_characters=backend.max_characters,
        max_loaded=backend.max_loaded,
        max_queue=backend.max_queue,
        memory_budget_bytes=budget_mb * 1024 * 1024 if budget_mb is not None else None,
        idle_timeout_s=lifecycle.idle_timeout_ms / 1000,
        preload=lifecycle.preload,
    )


# ---- tensor: ONNX models in a directory, run by onnxruntime; image classifiers among them -
def _onnx_models(plan: BackendPlan) -> OnnxModelsDir:
    """The directory as both the engine and discovery read it (one description of a model)."""
    from modelyard.backends.tensor.image_classifier import ClassifierSettings
    from modelyard.backends.tensor.onnx_models import OnnxModelsDir
    from modelyard.config.backends import TensorBackend

    backend = _as(plan, TensorBackend)
    classifiers = {
        name: ClassifierSettings(labels=c.labels, mean=c.mean, std=c.std)
        for name, c in backend.classifiers.items()
    }
    return OnnxModelsDir(
        plan.models_dir, backend=plan.name, models=backend.models, classifiers=classifiers
    )


def _tensor_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.tensor.engine import TensorEngine
    from modelyard.config.backends import TensorBackend

    backend = _as(plan, TensorBackend)
    lifecycle = plan.settings.config.hot_swap
    budget_mb = lifecycle.memory_budget_mb
    return TensorEngine(
        _onnx_models(plan),
        cpu_threads=backend.cpu_threads,
        max_loaded=backend.max_loaded,
        max_queue=backend.max_queue,
        memory_budget_bytes=budget_mb * 1024 * 1024 if budget_mb is not None else None,
        idle_timeout_s=lifecycle.idle_timeout_ms / 1000,
        preload=lifecycle.preload,
    )


def _onnx_source(plan: BackendPlan) -> DiscoverySource:
    from modelyard.discovery.onnx_files import OnnxDirectorySource

    return OnnxDirectorySource(_onnx_models(plan))


# ---- the OpenAI wire: any compatible server, and the hosted providers that speak it ------
def provider_endpoint(
    name: str, backend: Backend, current_key: Callable[[], str] | None = None
) -> ProviderEndpoint:
    """The OpenAI-wire upstream of an `openai_compat` entry or an OpenAI-wire hosted one;
    `current_key` gives its key as it is now (rotated on SIGHUP: `BackendPlan.secret`)."""
    if isinstance(backend, OpenAICompatBackend):
        base_url, dialect = normalise_base_url(backend.endpoint), GENERIC
    else:
        assert isinstance(backend, HostedBackend)
        base_url = (backend.base_url or OPENAI_WIRE_HOSTS[backend.kind]).rstrip("/")
        dialect = backend.kind  # an `openai-eu: {kind: openai}` entry speaks OpenAI's
    return ProviderEndpoint(
        name,
        base_url,
        api_key=backend.api_key or "",
        models=tuple(backend.models),
        timeout_s=backend.timeout_ms / 1000,
        max_concurrency=backend.max_concurrency,
        max_queue=backend.max_queue,
        current_key=current_key,
        dialect=dialect,
    )


def _openai_wire(endpoint: ProviderEndpoint, plan: BackendPlan) -> Engine:
    from modelyard.backends.openai_compat.engine import OpenAICompatEngine

    return OpenAICompatEngine(endpoint, connect_timeout_s=_connect_timeout_s(plan))


def _compat_engine(plan: BackendPlan) -> Engine:
    endpoint = provider_endpoint(plan.name, plan.backend, plan.secret("api_key"))
    shares = plan.share(endpoint.max_concurrency), plan.share(endpoint.max_queue, 0)
    return _openai_wire(replace(endpoint, max_concurrency=shares[0], max_queue=shares[1]), plan)


def _compat_source(plan: BackendPlan) -> DiscoverySource:
    from modelyard.discovery.openai_compat import OpenAICompatSource

    return OpenAICompatSource(provider_endpoint(plan.name, plan.backend, plan.secret("api_key")))


def _plugin_engine(plan: BackendPlan) -> Engine:
    from modelyard.assembly.plugins import plugin_engine

    return plugin_engine(plan.name, _as(plan, PluginBackend))


# ---- cohere: Chat v2 (its own wire format) -----------------------------------------------
def _hosted_endpoint(plan: BackendPlan, base_url: str) -> ProviderEndpoint:
    """A hosted provider's upstream on its own wire format: `base_url` (the configured one
    or the provider's default, as its engine wants it), the key as it is now, the limits."""
    backend = _as(plan, HostedBackend)
    return ProviderEndpoint(
        plan.name,
        base_url,
        api_key=backend.api_key or "",
        models=tuple(backend.models),
        timeout_s=backend.timeout_ms / 1000,
        max_concurrency=plan.share(backend.max_concurrency),
        max_queue=plan.share(backend.max_queue, 0),
        current_key=plan.secret("api_key"),
    )


def _cohere_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.cohere.engine import DEFAULT_BASE_URL, CohereEngine

    base_url = (_as(plan, HostedBackend).base_url or DEFAULT_BASE_URL).rstrip("/")
    return CohereEngine(
        _hosted_endpoint(plan, base_url), connect_timeout_s=_connect_timeout_s(plan)
    )


# ---- gemini and vertex: Google's generateContent wire format -----------------------------
def _gemini_engine(plan: BackendPlan) -> Engine:
    """The Gemini API (an API key) or Vertex AI (service-account credentials): one engine."""
    from modelyard.backends import gemini
    from modelyard.config import VertexBackend

    backend = plan.backend
    credential: gemini.ApiKey | gemini.ServiceAccountToken
    if isinstance(backend, VertexBackend):
        root, models_url = gemini.vertex_models_url(
            backend.project, backend.region, backend.endpoint
        )
        credential = gemini.ServiceAccountToken(plan.name, backend.credentials_file)
    else:
        backend = _as(plan, HostedBackend)
        root, models_url = gemini.gemini_models_url(backend.base_url)
        current, configured = plan.secret("api_key"), backend.api_key or ""
        credential = gemini.ApiKey(lambda: (current() if current else "") or configured)
    endpoint = gemini.GeminiEndpoint(
        plan.name,
        backend.kind,
        root,
        models_url,
        credential,
        models=tuple(backend.models),
        timeout_s=backend.timeout_ms / 1000,
        max_concurrency=plan.share(backend.max_concurrency),
        max_queue=plan.share(backend.max_queue, 0),
    )
    return gemini.GeminiEngine(endpoint, connect_timeout_s=_connect_timeout_s(plan))


# ---- bedrock: Converse and ConverseStream, signed with SigV4 -----------------------------
def _bedrock_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.bedrock.engine import BedrockEngine
    from modelyard.config import BedrockBackend

    timeout_s = _connect_timeout_s(plan)
    return BedrockEngine(plan.name, _as(plan, BedrockBackend), connect_timeout_s=timeout_s)


# ---- anthropic: the Messages API (its own wire format) ----------------------------------
def _anthropic_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.anthropic.engine import AnthropicEngine
    from modelyard.backends.anthropic.upstream import DEFAULT_BASE_URL

    base_url = normalise_base_url(_as(plan, HostedBackend).base_url or DEFAULT_BASE_URL)
    return AnthropicEngine(
        _hosted_endpoint(plan, base_url), connect_timeout_s=_connect_timeout_s(plan)
    )


# ---- elevenlabs: text to speech (its own wire format, streamed audio) --------------------
def _elevenlabs_engine(plan: BackendPlan) -> Engine:
    from modelyard.backends.elevenlabs.engine import DEFAULT_BASE_URL, ElevenLabsEngine

    base_url = normalise_base_url(_as(plan, HostedBackend).base_url or DEFAULT_BASE_URL)
    return ElevenLabsEngine(
        _hosted_endpoint(plan, base_url), connect_timeout_s=_connect_timeout_s(plan)
    )


_COMPAT_ROLE = "backend-openai-compat"

KINDS: dict[str, BackendKind] = {
    "local": BackendKind("backend-local", _local_engine, _gguf_source),
    "ollama": BackendKind(_COMPAT_ROLE, _ollama_engine, _ollama_source),
    "coreml": BackendKind("backend-coreml", _coreml_engine, _coreml_source),
    "whisper": BackendKind("backend-local", _whisper_engine),
    "piper": BackendKind("backend-local", _piper_engine),
    "tensor": BackendKind("backend-local", _tensor_engine, _onnx_source),
    "openai_compat": BackendKind(_COMPAT_ROLE, _compat_engine, _compat_source),
    **{
        kind: BackendKind(_COMPAT_ROLE, _compat_engine, hosted_catalog=True)
        for kind in OPENAI_WIRE_HOSTS
    },
    "anthropic": BackendKind(_COMPAT_ROLE, _anthropic_engine, hosted_catalog=True),
    "elevenlabs": BackendKind(_COMPAT_ROLE, _elevenlabs_engine, hosted_catalog=True),
    "cohere": BackendKind(_COMPAT_ROLE, _cohere_engine, hosted_catalog=True),
    "gemini": BackendKind(_COMPAT_ROLE, _gemini_engine, hosted_catalog=True),
    "vertex": BackendKind(_COMPAT_ROLE, _gemini_engine),
    "bedrock": BackendKind(_COMPAT_ROLE, _bedrock_engine),
}
PLUGIN_KIND = BackendKind("backend-plugins", _plugin_engine)


def not_served(config: ModelyardConfig) -> list[str]:
    """``accepted, not implemented yet: backends.NAME (...)`` for active backends no engine
    serves."""
    return [
        f"{NOTICE}: backends.{name} (no engine for kind {backend.kind} yet)"
        for name, backend in config.active_backends().items()
        if kind_of(backend).engine is None
    ]


def kind_of(backend: Backend) -> BackendKind:
    """The table entry of a configured backend (a plug-in kind for a `PluginBackend`)."""
    if isinstance(backend, PluginBackend):
        return PLUGIN_KIND
    return KINDS[backend.kind]


B = TypeVar("B")


def _connect_timeout_s(plan: BackendPlan) -> float:
    """A provider call's connect timeout (`gateway.timeouts.connect_timeout_ms`)."""
    return plan.settings.config.gateway.timeouts.connect_timeout_ms / 1000


def _as(plan: BackendPlan, cls: type[B]) -> B:
    assert isinstance(plan.backend, cls), f"{plan.name}: {plan.backend.kind} is not {cls}"
    return plan.backend
