"""What one gateway answer records: the GenAI server instruments, tokens and cost.

Each Generate and GenerateStream (over gRPC or an HTTP edge: both pass
`GuardedGateway`, measured by the loop that passes its chunks on: `GatewayServicer.stream`
for streams, `whole_answer`'s for a unary `Generate`) records, when it ends:

- ``gen_ai.server.request.duration`` (s): from the call to its last chunk, with
  ``error.type`` (the error's reason, "cancelled" when the caller left) when it failed;
- ``gen_ai.server.time_to_first_token`` (s), successful answers: to the first chunk that
  carries text, tool calls or output;
- ``gen_ai.server.time_per_output_token`` (s), successful answers of two tokens or more:
  the time after the first token over the output tokens after it;
- ``gen_ai.client.token.usage`` ({token}), ``gen_ai.token.type`` input and output: the
  answer's usage, what the caller is billed for;
- ``modelyard.cost`` (USD): the answer's cost as the gateway priced it.

Attributes: ``gen_ai.operation.name`` ("chat" for chat input, "text_completion" for text,
"generate_content" for audio, images or tensors), ``gen_ai.provider.name`` (the answering
model's provider, the conventions' well-known names where one applies: ``aws.bedrock``,
``gcp.gemini``, ``gcp.vertex_ai``, ``mistral_ai``), ``gen_ai.request.model`` (the model or
alias asked for, when the catalog or the routes know it; a name neither knows is
``_OTHER``, so a caller cannot grow the series), ``gen_ai.response.model``. With
tracing on, the call's SERVER span gets the same attributes, ``error.type`` and
``gen_ai.usage.input_tokens`` / ``output_tokens``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from opentelemetry import trace

from modelyard.meters.instruments import MAX_SERIES, Attributes, Meters, Series
from modelyard_client.errors import ModelyardError
from modelyard_client.v1 import common_pb2, gateway_pb2

# The conventions' well-known gen_ai.provider.name values, by modelyard provider name.
PROVIDER_NAMES = {
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "mistral": "mistral_ai",
}
_OPERATIONS = {"chat": "chat", "text": "text_completion"}
OTHER = "_OTHER"

# The provider of a catalog id ("" when the catalog does not know it).
ProviderOf = Callable[[str], str]
# Whether a requested name is a catalog id or an alias.
KnownName = Callable[[str], bool]


def _on_span(
    span: trace.Span,
    base: Attributes,
    last: gateway_pb2.GenerateChunk | None,
    error: str,
) -> None:
    """The same attributes on the call's span, with the usage the conventions name."""
    span.set_attributes(dict(base))
    if error:
        span.set_attribute("error.type", error)
    elif last is not None and last.HasField("usage"):
        span.set_attribute("gen_ai.usage.input_tokens", last.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", last.usage.output_tokens)


def _error_type(exc: BaseException) -> str:
    """``error.type``: the error's reason; a class outside the hierarchy (a bug) by its
    name; "cancelled" when the caller left (a cancelled task, a closed stream)."""
    if isinstance(exc, ModelyardError):
        return exc.reason
    if isinstance(exc, Exception):
        return type(exc).__name__
    return "cancelled"


class GatewayCallMeter:
    """Measures the answers of one gateway."""

    def __init__(self, meters: Meters, provider_of: ProviderOf, known: KnownName) -> None:
        self.meters = meters
        self._provider_of = provider_of
        self._known = known
        # Each attribute set's series in the five instruments, looked up once.
        self._answers: dict[Attributes, _AnswerSeries] = {}

    def refused(
        self, request: gateway_pb2.GenerateRequest, exc: BaseException, started: float
    ) -> None:
        """A call refused before its first chunk was asked for (bad input, a guardrail)."""
        AnswerMeasure(self, request, started).ended(exc)

    def measure(self, request: gateway_pb2.GenerateRequest, started: float) -> AnswerMeasure:
        """One answer to measure from `started` (a `perf_counter` reading) as its reader
        sees its chunks (`AnswerMeasure.seen`) and when it ends (`AnswerMeasure.ended`)."""
        return AnswerMeasure(self, request, started)

    def _series(self, base: Attributes) -> _AnswerSeries:
        series = self._answers.get(base)
        if series is None:
            m = self.meters
            series = _AnswerSeries(
                m.server_request_duration.series_of(base),
                m.server_time_to_first_token.series_of(base),
                m.server_time_per_output_token.series_of(base),
                m.client_token_usage.series_of((*base, ("gen_ai.token.type", "input"))),
                m.client_token_usage.series_of((*base, ("gen_ai.token.type", "output"))),
                m.cost.series_of(base),
            )
            if len(self._answers) < MAX_SERIES:  # the instruments' own bound, past it overflow
                self._answers[base] = series
        return series

    def _record(
        self,
        request: gateway_pb2.GenerateRequest,
        model: str,
        started: float,
        first: float,
        last: gateway_pb2.GenerateChunk | None,
        error: str,
    ) -> None:
        ended = time.perf_counter()
        base = self._attributes(request, model)
        span = trace.get_current_span()  # the call's SERVER span, when tracing is on
        if span.is_recording():
            _on_span(span, base, last, error)
        m = self.meters
        if error:
            m.server_request_duration.record(ended - started, (*base, ("error.type", error)))
            return
        series = self._series(base)
        series.duration.observe(ended - started)
        if first:
            series.ttft.observe(first - started)
        usage = last.usage if last is not None and last.HasField("usage") else None
        if usage is None:
            return
        if usage.output_tokens > 1 and first:
            series.tpot.observe((ended - first) / (usage.output_tokens - 1))
        series.input_tokens.observe(usage.input_tokens)
        series.output_tokens.observe(usage.output_tokens)
        if usage.cost_usd:
            series.cost.value += usage.cost_usd
            series.cost.count += 1

    def _attributes(self, request: gateway_pb2.GenerateRequest, model: str) -> Attributes:
        kind = request.input.WhichOneof("kind") or ""
        provider = self._provider_of(model) if model else ""
        asked = request.model
        if asked and not self._known(asked):
            asked = OTHER
        return (
            ("gen_ai.operation.name", _OPERATIONS.get(kind, "generate_content")),
            ("gen_ai.provider.name", PROVIDER_NAMES.get(provider, provider) or OTHER),
            ("gen_ai.request.model", asked),
            ("gen_ai.response.model", model),
        )


class _AnswerSeries(NamedTuple):
    """One attribute set's series in each instrument an answer records."""

    duration: Series
    ttft: Series
    tpot: Series
    input_tokens: Series
    output_tokens: Series
    cost: Series


class AnswerMeasure:
    """One answer being measured: its reader calls `seen` with each chunk it passes on and
    `ended` once, with the exception the answer ended in (None: it finished), however it
    ends; `ended` records it."""

    __slots__ = ("_meter", "_request", "_started", "first", "last", "model")

    def __init__(
        self, meter: GatewayCallMeter, request: gateway_pb2.GenerateRequest, started: float
    ) -> None:
        self._meter = meter
        self._request = request
        self._started = started
        self.first = 0.0  # when the first chunk with text, tool calls or output came
        self.model = ""
        self.last: gateway_pb2.GenerateChunk | None = None

    def seen(self, chunk: gateway_pb2.GenerateChunk) -> None:
        if chunk.model_id:
            self.model = chunk.model_id
        if not self.first and (chunk.text or chunk.tool_calls or chunk.HasField("output")):
            self.first = time.perf_counter()
        self.last = chunk

    def ended(self, exc: BaseException | None) -> None:
        error = "" if exc is None else _error_type(exc)
        self._meter._record(self._request, self.model, self._started, self.first, self.last, error)


class AttemptMeter:
    """``gen_ai.client.operation.duration`` (s): each model attempt the gateway makes (a
    retry, a fallback, a hedge and a continuation are attempts of their own), as the
    live figures count them (`gateway/performance.py`), from its send to its last piece,
    with ``error.type`` (the reason) when it failed; the gateway is the client here, its
    backends the servers. Attributes as the answers', the request model the attempt's."""

    def __init__(self, meters: Meters) -> None:
        self._duration = meters.client_operation_duration
        self._attributes: dict[tuple[str, str, str, str], Attributes] = {}

    def record(
        self, kind: str, model: common_pb2.ModelEntry, seconds: float, error_type: str
    ) -> None:
        key = (kind, model.id, model.provider, error_type)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = (
                ("gen_ai.operation.name", _OPERATIONS.get(kind, "generate_content")),
                ("gen_ai.provider.name", PROVIDER_NAMES.get(model.provider, model.provider)),
                ("gen_ai.request.model", model.id),
                ("gen_ai.response.model", model.id),
            )
            if error_type:
                attributes = (*attributes, ("error.type", error_type))
            if len(self._attributes) < 10_000:  # models x providers x reasons: bounded anyway
                self._attributes[key] = attributes
        self._duration.record(seconds, attributes)
