"""The metrics sent by OTLP, as the standard ``OTEL_*`` variables say.

``OTEL_METRICS_EXPORTER`` ``otlp`` (unset: ``otlp`` when ``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set, the rule tracing follows) or ``none``;
every ``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds (default 60,000) the aggregates go to
the OpenTelemetry SDK's OTLP/gRPC exporter, which reads its own ``OTEL_EXPORTER_OTLP_*``
variables (endpoint, headers, TLS, timeout); ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` name the resource. Temporality is cumulative, from the
process's start. An export that fails is logged; the next one sends the totals again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from modelyard.meters.instruments import Instrument, Meters
from modelyard.telemetry import process_resource

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 60.0
_SCOPE = InstrumentationScope("modelyard")


def otlp_wanted(env: Mapping[str, str]) -> bool:
    chosen = env.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    if chosen:
        return chosen == "otlp"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    )


def export_interval_s(env: Mapping[str, str]) -> float:
    text = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    try:
        millis = float(text) if text else DEFAULT_INTERVAL_S * 1000
    except ValueError:
        log.warning("OTEL_METRIC_EXPORT_INTERVAL=%r is not a number: %.0f ms", text, 60000.0)
        millis = DEFAULT_INTERVAL_S * 1000
    return max(millis, 100.0) / 1000


def metrics_data(meters: Meters, resource: Resource) -> MetricsData:
    """The aggregates now, in the SDK's data model."""
    now = time.time_ns()
    metrics = [_metric(i, now) for i in meters.instruments() if i.series]
    return MetricsData(
        resource_metrics=[
            ResourceMetrics(
                resource=resource,
                scope_metrics=[ScopeMetrics(scope=_SCOPE, metrics=metrics, schema_url="")],
                schema_url="",
            )
        ]
    )


def _metric(instrument: Instrument, now: int) -> Metric:
    cumulative = AggregationTemporality.CUMULATIVE
    start = instrument.start_ns
    series = list(instrument.series.items())
    data: Sum | Histogram
    if instrument.bounds is None:
        points = [NumberDataPoint(dict(a), start, now, s.value) for a, s in series]
        data = Sum(data_points=points, aggregation_temporality=cumulative, is_monotonic=True)
    else:
        bounds = [float(b) for b in instrument.bounds]
        histogram_points = [
            HistogramDataPoint(
                dict(a), start, now, s.count, s.value, list(s.buckets), bounds, s.min, s.max
            )
            for a, s in series
        ]
        data = Histogram(data_points=histogram_points, aggregation_temporality=cumulative)
    return Metric(instrument.name, instrument.description, instrument.unit, data)


class OtlpMetrics:
    """Sends `meters` every `interval_s` through `exporter` until cancelled."""

    def __init__(
        self, meters: Meters, exporter: MetricExporter, interval_s: float, service_name: str
    ) -> None:
        self._meters = meters
        self._exporter = exporter
        self.interval_s = interval_s
        self._resource = process_resource(service_name)

    @classmethod
    def from_env(
        cls, meters: Meters, service_name: str, env: Mapping[str, str] | None = None
    ) -> OtlpMetrics | None:
        env = os.environ if env is None else env
        if not otlp_wanted(env):
            return None
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return cls(meters, OTLPMetricExporter(), export_interval_s(env), service_name)

    async def export(self) -> bool:
        data = metrics_data(self._meters, self._resource)
        result = await asyncio.to_thread(self._exporter.export, data)
        if result is not MetricExportResult.SUCCESS:
            log.warning("the OTLP metrics export failed: the next one sends the totals again")
            return False
        return True

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await self.export()
                except Exception:
                    log.exception("the OTLP metrics export failed")
        finally:
            await asyncio.to_thread(self._exporter.shutdown)
