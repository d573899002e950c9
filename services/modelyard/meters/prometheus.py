"""The metrics as Prometheus text: ``GET /metrics`` on a process's metrics listener.

Names follow OpenTelemetry's Prometheus compatibility rules: dots become underscores,
a unit of seconds adds ``_seconds``, USD ``_usd``, a counter ends in ``_total``
(``gen_ai.server.request.duration`` → ``gen_ai_server_request_duration_seconds``,
``modelyard.requests`` → ``modelyard_requests_total``); attribute keys become labels the
same way (``gen_ai.request.model`` → ``gen_ai_request_model``). A series without an
attribute another series of the same instrument has shows it as the empty label.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from modelyard.meters.instruments import Instrument, Meters
from modelyard.meters.merged import PRIMARY, merged_exposition, scrape

PATH = "/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_UNIT_SUFFIXES = {"s": "_seconds", "USD": "_usd"}


def prometheus_name(instrument: Instrument) -> str:
    return instrument.name.replace(".", "_") + _UNIT_SUFFIXES.get(instrument.unit, "")


def label_name(key: str) -> str:
    return key.replace(".", "_")


class _Collector(Collector):
    def __init__(self, meters: Meters) -> None:
        self._meters = meters

    def collect(self) -> Iterator[Metric]:
        for instrument in self._meters.instruments():
            keys = list(dict.fromkeys(k for attrs in instrument.series for k, _ in attrs))
            labels = [label_name(k) for k in keys]
            name = prometheus_name(instrument)
            family: CounterMetricFamily | HistogramMetricFamily
            if instrument.bounds is None:
                family = CounterMetricFamily(name, instrument.description, labels=labels)
            else:
                family = HistogramMetricFamily(name, instrument.description, labels=labels)
            for attrs, series in list(instrument.series.items()):
                given = dict(attrs)
                values = [given.get(k, "") for k in keys]
                if instrument.bounds is None:
                    assert isinstance(family, CounterMetricFamily)
                    family.add_metric(values, series.value)
                    continue
                assert isinstance(family, HistogramMetricFamily)
                cumulative, buckets = 0, []
                for bound, count in zip(instrument.bounds, series.buckets, strict=False):
                    cumulative += count
                    buckets.append((repr(float(bound)), cumulative))
                buckets.append(("+Inf", series.count))
                family.add_metric(values, buckets, series.value)
            yield family


def exposition(meters: Meters) -> bytes:
    """Every instrument of `meters` in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(meters))
    return generate_latest(registry)


class MetricsListener:
    """An HTTP listener serving `PATH` (aiohttp, on the process's event loop).

    `workers`, when set (`up --workers N`): the gateway workers' (label, metrics URL)
    now; each scrape then holds theirs too, every series labelled (`meters.merged`)."""

    def __init__(self, meters: Meters) -> None:
        self.meters = meters
        self.workers: Callable[[], Sequence[tuple[str, str]]] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{PATH}"

    async def body(self) -> bytes:
        # Rendered off the event loop: a scrape of thousands of series takes milliseconds,
        # and the calls in flight should not wait for it.
        own = await asyncio.to_thread(exposition, self.meters)
        workers = self.workers() if self.workers is not None else ()
        if not workers:
            return own
        if self._session is None:
            self._session = aiohttp.ClientSession()
        theirs = await scrape(self._session, workers)
        return await asyncio.to_thread(merged_exposition, [(PRIMARY, own), *theirs])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


async def start_metrics_listener(meters: Meters, listen: str) -> MetricsListener:
    """Serve `meters` at ``http://listen/metrics`` ("127.0.0.1:0": a free port)."""
    listener = MetricsListener(meters)

    async def metrics(_: web.Request) -> web.Response:
        body = await listener.body()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get(PATH, metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    site = web.TCPSite(runner, host, int(port))
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else int(port)
    listener._runner, listener.host, listener.port = runner, host, int(bound)
    return listener
