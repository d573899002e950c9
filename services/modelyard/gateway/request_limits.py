"""The bound on every string and repeated field of the gateway's requests.

Without them a caller could send a 10 MB ``request_id`` (echoed in the answer),
10,000 stop strings or thousands of fallback models, and have them forwarded
to every backend, or make the error message naming the problem too big for
gRPC's metadata limit. One table, `LIMITS`, keyed by the proto field's full
name so a message used in two places (`Input` as ``input`` and
``task.input``) has one bound; `check_bounds` walks a request against it
before anything else runs, and names the first field over its bound.

The numbers are documented twice, in the proto comments and in the README's
"Request limits" table; ``tests/gateway/test_request_limits.py`` checks both
and that no string or repeated field is left without a bound. Lengths count
characters (Unicode code points, what ``len`` counts in Python).

Three bounds are the operator's to set, against unbounded consumption rather
than oversized fields: the messages of a chat, the models of a Compare and the
items of a batch (`security.input_limits`: `InputLimitsConfig` holds their
defaults, which `LIMITS` states). Their refusals name the key.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from modelyard.config.security import InputLimitsConfig
from modelyard_client.errors import InvalidRequest


@dataclass(frozen=True)
class Bound:
    """How much one field may hold.

    `entries`: how many items a repeated field may have; `chars`: how long a
    string (each string of a repeated one) may be; `in_input_size`: text and
    bytes of an `Input`, bounded together by the gateway's input size limit
    (``security.input_limits.max_input_bytes``, 1 MiB) rather than one by one;
    `setting`: the ``security.input_limits`` key that sets `entries` (which then
    holds its default).
    """

    entries: int | None = None
    chars: int | None = None
    in_input_size: bool = False
    setting: str = ""

    def describe(self) -> str:
        """The bound as the proto comments and the README say it."""
        if self.in_input_size:
            return "counted in the input size limit"
        parts = []
        if self.entries is not None:
            configured = f" by default ({INPUT_LIMITS_KEY}.{self.setting})" if self.setting else ""
            parts.append(f"at most {self.entries:,} entries{configured}")
        if self.chars is not None:
            parts.append(f"{'each ' if parts else ''}at most {self.chars:,} characters")
        return ", ".join(parts)


INPUT_LIMITS_KEY = "security.input_limits"
_DEFAULT_LIMITS = InputLimitsConfig()


def _configured(setting: str, chars: int | None = None) -> Bound:
    """A bound whose entries `security.input_limits.<setting>` sets."""
    return Bound(entries=getattr(_DEFAULT_LIMITS, setting), chars=chars, setting=setting)


# A catalog id is `<backend name>/<provider model name>`: the longest seen in
# practice (Hugging Face repository ids with a quantization suffix) are under 120.
MODEL_ID_CHARS = 256
# Caller-chosen ids (and the end user's, as OpenAI's `user`): a UUID is 36 characters,
# a W3C trace id 32.
CALLER_ID_CHARS = 128
# Every fallback model is a whole backend attempt within one deadline, and each
# failed attempt travels back in AllModelsFailed: 8 is more than a chain needs.
MAX_FALLBACK_MODELS = 8
# OpenAI's own bounds on tools: 128 functions a request, names of 64 characters.
MAX_TOOLS = 128
TOOL_NAME_CHARS = 64
# The parts of one chat message (text and images; `backends/content_parts.py`).
MAX_CONTENT_PARTS = 64
# The texts of one Embed call (their bytes count together in the input size limit too).
MAX_EMBED_INPUTS = 2048

_INPUT = Bound(in_input_size=True)
_ENUM_NAME = Bound(chars=64)  # role, dtype: names checked elsewhere, kept short before that

LIMITS: Mapping[str, Bound] = {
    # gateway.proto
    "modelyard.v1.GenerateRequest.model": Bound(chars=MODEL_ID_CHARS),
    "modelyard.v1.GenerateRequest.request_id": Bound(chars=CALLER_ID_CHARS),
    "modelyard.v1.GenerateRequest.conversation_id": Bound(chars=CALLER_ID_CHARS),
    "modelyard.v1.GenerateRequest.user": Bound(chars=CALLER_ID_CHARS),
    "modelyard.v1.GenerateRequest.fallback_models": Bound(
        entries=MAX_FALLBACK_MODELS, chars=MODEL_ID_CHARS
    ),
    "modelyard.v1.BatchGenerateRequest.requests": _configured("max_batch_items"),
    "modelyard.v1.CompareRequest.models": _configured("max_compare_models", chars=MODEL_ID_CHARS),
    # Embed: OpenAI's own bound on the inputs of one embeddings request is 2,048.
    "modelyard.v1.EmbedRequest.model": Bound(chars=MODEL_ID_CHARS),
    "modelyard.v1.EmbedRequest.inputs": Bound(entries=MAX_EMBED_INPUTS),
    "modelyard.v1.EmbedRequest.request_id": Bound(chars=CALLER_ID_CHARS),
    # The live figures (`metrics.py`)
    "modelyard.v1.GetModelMetricsRequest.model": Bound(chars=MODEL_ID_CHARS),
    "modelyard.v1.GetProviderMetricsRequest.provider": Bound(chars=128),
    # Evaluation (`modelyard.evaluation`)
    "modelyard.v1.EvaluateModelRequest.models": Bound(entries=16, chars=MODEL_ID_CHARS),
    "modelyard.v1.EvaluateModelRequest.suite": Bound(chars=128),
    "modelyard.v1.EvaluationSuite.name": Bound(chars=128),
    "modelyard.v1.EvaluationSuite.cases": Bound(entries=256),
    "modelyard.v1.EvaluationSuite.judge_model": Bound(chars=MODEL_ID_CHARS),
    "modelyard.v1.EvaluationCase.id": Bound(chars=128),
    "modelyard.v1.EvaluationCase.prompt": Bound(chars=65_536),
    "modelyard.v1.EvaluationCase.system": Bound(chars=65_536),
    "modelyard.v1.EvaluationCase.scorer": Bound(chars=16),
    "modelyard.v1.EvaluationCase.expected": Bound(chars=65_536),
    # common.proto: GenerationParams. OpenAI takes 4 stop sequences; llama.cpp any.
    "modelyard.v1.GenerationParams.stop": Bound(entries=16, chars=256),
    "modelyard.v1.GenerationParams.response_schema_json": Bound(chars=65_536),
    # Tools: OpenAI takes 128 functions, names of 64 characters.
    "modelyard.v1.GenerationParams.tools": Bound(entries=MAX_TOOLS),
    "modelyard.v1.GenerationParams.tool_choice": Bound(chars=TOOL_NAME_CHARS),
    # Text to speech: an ElevenLabs voice id is 20 characters; a Piper speaker a name.
    "modelyard.v1.GenerationParams.voice": Bound(chars=128),
    "modelyard.v1.GenerationParams.audio_format": Bound(chars=16),
    "modelyard.v1.ToolDefinition.name": Bound(chars=TOOL_NAME_CHARS),
    "modelyard.v1.ToolDefinition.description": Bound(chars=4096),
    "modelyard.v1.ToolDefinition.parameters_json": Bound(chars=65_536),
    "modelyard.v1.ToolCall.id": Bound(chars=CALLER_ID_CHARS),
    "modelyard.v1.ToolCall.name": Bound(chars=TOOL_NAME_CHARS),
    "modelyard.v1.ToolCall.arguments_json": _INPUT,
    # common.proto: Input. Its text and bytes count in the input size limit.
    "modelyard.v1.Input.text": _INPUT,
    "modelyard.v1.Input.structured": _INPUT,
    "modelyard.v1.ChatMessages.messages": _configured("max_messages"),
    "modelyard.v1.ChatMessage.role": _ENUM_NAME,
    "modelyard.v1.ChatMessage.content": _INPUT,
    "modelyard.v1.ChatMessage.name": Bound(chars=64),  # OpenAI's own limit
    "modelyard.v1.ChatMessage.tool_calls": Bound(entries=MAX_TOOLS),
    "modelyard.v1.ChatMessage.tool_call_id": Bound(chars=CALLER_ID_CHARS),
    # Content parts: Cohere takes 20 images a request, Anthropic 100; 64 parts hold either.
    "modelyard.v1.ChatMessage.parts": Bound(entries=MAX_CONTENT_PARTS),
    "modelyard.v1.ContentPart.text": _INPUT,
    "modelyard.v1.Image.data": _INPUT,
    "modelyard.v1.Image.url": _INPUT,  # may be a data: URL, as big as the image
    "modelyard.v1.Image.mime_type": Bound(chars=256),
    "modelyard.v1.Audio.data": _INPUT,
    "modelyard.v1.Audio.mime_type": Bound(chars=256),
    "modelyard.v1.Tensors.tensors": Bound(entries=256),
    "modelyard.v1.Tensor.name": Bound(chars=256),
    "modelyard.v1.Tensor.shape": Bound(entries=32),  # numpy's own limit on dimensions
    "modelyard.v1.Tensor.dtype": _ENUM_NAME,
    "modelyard.v1.Tensor.data": _INPUT,
    # selector.proto: Task and Constraints, as a GenerateRequest carries them.
    "modelyard.v1.Task.required_capabilities": Bound(entries=32),
    "modelyard.v1.Task.agent_id": Bound(chars=CALLER_ID_CHARS),
    "modelyard.v1.Constraints.preferred_backend": Bound(chars=128),
    "modelyard.v1.Constraints.excluded_models": Bound(entries=256, chars=MODEL_ID_CHARS),
    "modelyard.v1.Constraints.region": Bound(chars=64),
}


def check_bounds(
    message: Message, prefix: str = "", limits: InputLimitsConfig = _DEFAULT_LIMITS
) -> None:
    """Raise `InvalidRequest` naming the first field of `message` over its bound.

    The message never quotes the field's content, only its size, so the error
    stays small whatever was sent. `limits`: the operator's (`security.input_limits`).
    """
    try:
        _walk(message, _plan(message.DESCRIPTOR, limits))
    except _Over as over:
        path = prefix + over.path
        raise InvalidRequest(f"{path} {over.problem}", field=path) from None


class _Over(Exception):
    """A field over its bound, its path built while the walk unwinds (only then)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem


def _walk(message: Message, plan: _Plan) -> None:
    for name, repeated, entries, chars, setting, child in plan:
        if child and not repeated:
            # Checked before reading it: reading an unset message field builds one.
            if message.HasField(name):
                try:
                    _walk(getattr(message, name), child)
                except _Over as over:
                    over.path = f"{name}.{over.path}"
                    raise
            continue
        value = getattr(message, name)
        if repeated:
            if entries and len(value) > entries:
                named = f" ({INPUT_LIMITS_KEY}.{setting})" if setting else ""
                raise _Over(name, f"has {len(value)} entries; the limit is {entries}{named}")
            if child:
                for i, item in enumerate(value):
                    try:
                        _walk(item, child)
                    except _Over as over:
                        over.path = f"{name}[{i}].{over.path}"
                        raise
            elif chars:
                for i, text in enumerate(value):
                    if len(text) > chars:
                        raise _Over(f"{name}[{i}]", _too_long(text, chars))
        elif chars and len(value) > chars:
            raise _Over(name, _too_long(value, chars))


def _too_long(text: str, limit: int) -> str:
    return f"is {len(text)} characters long; the limit is {limit}"


# The fields of one message type to look at: (name, repeated, entries bound or 0,
# characters bound or 0, the input limit setting the entries or "", the plan of
# a message field to walk into, else empty).
_Plan = tuple[tuple[str, bool, int, int, str, "_Plan"], ...]


@functools.cache
def _plan(descriptor: Descriptor, limits: InputLimitsConfig) -> _Plan:
    """The fields of one message type that hold something bounded, worked out once.

    Reading just those by name keeps the walk cheap (`ListFields` on every chat
    message of a long conversation cost ~5 µs a message); so does building a
    field's path only once one is found over its bound.
    """
    steps = []
    for field in descriptor.fields:
        bound = LIMITS.get(field.full_name, _UNBOUNDED)
        if bound.in_input_size:
            continue
        child = field.message_type
        google = child is not None and child.full_name.startswith("google.")
        walk = _plan(child, limits) if child and not google else ()
        entries = getattr(limits, bound.setting) if bound.setting else bound.entries
        if walk or entries or bound.chars:
            steps.append(
                (
                    field.name,
                    field.is_repeated,
                    entries or 0,
                    bound.chars or 0,
                    bound.setting,
                    walk,
                )
            )
    return tuple(steps)


_UNBOUNDED = Bound()
