"""OpenTelemetry setup and W3C trace context over gRPC metadata.

The exporter is chosen by the standard variables: ``OTEL_TRACES_EXPORTER``
(``otlp``, ``console`` or ``none``; unset means ``otlp`` when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set,
else ``none``), the OTLP exporter's own ``OTEL_EXPORTER_OTLP_*`` variables,
``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` for the resource and
``OTEL_TRACES_SAMPLER`` for sampling (read by the SDK itself). Every process's
resource (`process_resource`, its spans' and its OTLP metrics') names the
process with a ``service.instance.id`` of its own, as the semantic conventions
ask (a random UUID, unless ``OTEL_RESOURCE_ATTRIBUTES`` gives one): the workers
of ``up --workers N`` and every replica send cumulative series that a collector
keeps apart.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

log = logging.getLogger(__name__)

INSTANCE_ID = str(uuid.uuid4())  # this process's service.instance.id


def process_resource(default_service_name: str) -> Resource:
    """This process's OpenTelemetry resource: `default_service_name` unless
    ``OTEL_SERVICE_NAME`` names it, and its own ``service.instance.id``."""
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": default_service_name}
    if "service.instance.id" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attrs["service.instance.id"] = INSTANCE_ID
    return Resource.create(attrs)


_TRACER_NAME = "modelyard"


# A proxy: it follows whatever provider is installed later, so one is enough.
_TRACER = trace.get_tracer(_TRACER_NAME)


def tracer() -> trace.Tracer:
    """The tracer every modelyard span is made with (follows the global provider)."""
    return _TRACER


def tracing_enabled() -> bool:
    """Whether spans are recorded at all (an SDK provider is installed)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


# Reusable (it keeps no state): the block of a span not made because tracing is off.
_NO_SPAN: AbstractContextManager[trace.Span] = nullcontext(trace.INVALID_SPAN)


def current_span(
    name: str,
    kind: trace.SpanKind,
    attributes: Callable[[], dict[str, str | bool]],
) -> AbstractContextManager[trace.Span]:
    """A span made current for a block; with tracing off, `INVALID_SPAN` (whose
    `set_status` does nothing) and no span at all: even a no-op span and its
    attributes cost tens of microseconds a call, measured. `attributes` is called
    only for a span that is made."""
    if not tracing_enabled():
        return _NO_SPAN
    # Not the library's own error handling: it records the exception's raw message (an
    # upstream may echo a credential in it) and sets it as the status over the scrubbed,
    # capped one the caller sets; every caller sets the status of the errors it raises.
    return tracer().start_as_current_span(
        name,
        kind=kind,
        attributes=attributes(),
        record_exception=False,
        set_status_on_exception=False,
    )


def configure_tracing(default_service_name: str) -> TracerProvider | None:
    """Install a tracer provider with the exporter the environment asks for.

    Returns the provider (so the caller can shut it down and flush), or None
    when tracing is off.
    """
    exporter = _exporter_from_env()
    if exporter is None:
        return None
    provider = TracerProvider(resource=process_resource(default_service_name))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _exporter_from_env() -> SpanExporter | None:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not choice:
        has_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        )
        choice = "otlp" if has_endpoint else "none"
    if choice == "none":
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(
        f"OTEL_TRACES_EXPORTER={choice!r} is not supported; use 'otlp', 'console' or 'none'"
    )


def context_from_metadata(
    metadata: Iterable[tuple[str, str | bytes]] | None,
) -> otel_context.Context | None:
    """The caller's trace context carried in gRPC invocation metadata."""
    if not metadata:
        return None
    carrier = {k: v for k, v in metadata if isinstance(v, str)}
    if "traceparent" not in carrier:
        return None
    return propagate.extract(carrier)


def metadata_with_trace() -> tuple[tuple[str, str], ...]:
    """Outgoing gRPC metadata that carries the current trace context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())
