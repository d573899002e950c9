"""Metrics: the OpenTelemetry GenAI conventions' instruments and modelyard's own, scraped by
Prometheus and exported by OTLP.

`Meters` (one per stack) holds every instrument (`instruments.py`, the names, units and
bucket boundaries in one table). Recording is modelyard's own aggregation, a dictionary
update and a bisect: the OpenTelemetry SDK's synchronous instruments cost 10-20 µs a
record here, measured, and a request records six. The aggregates leave as the SDK's
data model: `otlp.py` hands them to the SDK's OTLP exporter by the standard ``OTEL_*``
variables, `prometheus.py` serves them as Prometheus text at ``/metrics`` on the
process's metrics listener (``--metrics-listen``). What a gateway call records:
`gateway_calls.py`.
"""

from __future__ import annotations

from modelyard.meters.instruments import Meters

__all__ = ["Meters"]
