"""The aggregates leave by OTLP/gRPC through the OpenTelemetry SDK's exporter: a collector
on 127.0.0.1 (the OTLP MetricsService of opentelemetry-proto, answering as a collector
does) receives the instruments with their points, cumulative."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)

from modelyard.meters import Meters
from modelyard.meters.otlp import OtlpMetrics, export_interval_s, otlp_wanted
from modelyard.telemetry import INSTANCE_ID


class Collector(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.received: list[metrics_service_pb2.ExportMetricsServiceRequest] = []

    async def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self.received.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    server = grpc.aio.server()
    servicer = Collector()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, port
    await server.stop(0)


def test_the_exporter_is_chosen_as_the_standard_variables_say() -> None:
    assert not otlp_wanted({})
    assert otlp_wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert otlp_wanted({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4317"})
    assert not otlp_wanted({"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert otlp_wanted({"OTEL_METRICS_EXPORTER": "otlp"})
    assert export_interval_s({}) == 60.0
    assert export_interval_s({"OTEL_METRIC_EXPORT_INTERVAL": "2500"}) == 2.5
    assert export_interval_s({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}) == 60.0


async def test_a_collector_receives_the_instruments_and_their_points(
    collector: tuple[Collector, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, port = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_INSECURE", "true")
    meters = Meters()
    model = (("gen_ai.operation.name", "chat"), ("gen_ai.response.model", "openai/gpt-5"))
    for seconds in (0.015, 0.03, 0.03):
        meters.server_request_duration.record(seconds, model)
    meters.requests.add(1, (("rpc.method", "m"), ("rpc.response.status_code", "OK")))
    meters.requests.add(1, (("rpc.method", "m"), ("rpc.response.status_code", "OK")))
    otlp = OtlpMetrics.from_env(meters, "gateway-under-test")
    assert otlp is not None
    assert await otlp.export()

    (request,) = received.received
    (resource,) = request.resource_metrics
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "gateway-under-test"
    # This process's own id (the traces' too), another process another one.
    assert service["service.instance.id"] == INSTANCE_ID
    assert str(uuid.UUID(INSTANCE_ID)) == INSTANCE_ID
    other = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", "from modelyard.telemetry import INSTANCE_ID; print(INSTANCE_ID)"),
        stdout=asyncio.subprocess.PIPE,
    )
    printed, _ = await other.communicate()
    assert printed.decode().strip() not in ("", INSTANCE_ID)
    (scope,) = resource.scope_metrics
    assert scope.scope.name == "modelyard"
    by_name = {m.name: m for m in scope.metrics}
    assert set(by_name) == {"gen_ai.server.request.duration", "modelyard.requests"}
    duration = by_name["gen_ai.server.request.duration"]
    assert duration.unit == "s"
    (point,) = duration.histogram.data_points
    assert point.count == 3 and point.sum == pytest.approx(0.075)
    assert list(point.explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    assert list(point.bucket_counts)[:4] == [0, 1, 2, 0]
    assert (point.min, point.max) == (0.015, 0.03)
    assert {a.key: a.value.string_value for a in point.attributes} == dict(model)
    requests = by_name["modelyard.requests"]
    assert requests.sum.is_monotonic
    assert [p.as_double for p in requests.sum.data_points] == [2.0]
    # Cumulative: the second export sends the totals again, with what came since.
    meters.requests.add(1, (("rpc.method", "m"), ("rpc.response.status_code", "OK")))
    assert await otlp.export()
    later = {m.name: m for m in received.received[1].resource_metrics[0].scope_metrics[0].metrics}
    assert [p.as_double for p in later["modelyard.requests"].sum.data_points] == [3.0]
