"""One scrape for `up --workers N`: every process's series, each labelled with its process,
from real `Meters` and real metrics listeners."""

from __future__ import annotations

import socket

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from modelyard.meters.instruments import Meters
from modelyard.meters.merged import merged_exposition, scrape
from modelyard.meters.prometheus import exposition, start_metrics_listener

GENERATE = (("rpc.method", "modelyard.v1.GatewayService/Generate"),)


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _meters(calls: int, seconds: float) -> Meters:
    meters = Meters()
    for _ in range(calls):
        meters.requests.add(1, GENERATE)
        meters.server_request_duration.record(seconds, GENERATE)
    return meters


def test_each_family_comes_once_with_every_process_s_samples_labelled() -> None:
    primary, worker = _meters(3, 0.015), _meters(2, 0.5)
    text = merged_exposition([("0", exposition(primary)), ("1", exposition(worker))])
    assert text.count(b"# TYPE modelyard_requests_total counter") == 1
    assert text.count(b"# TYPE gen_ai_server_request_duration_seconds histogram") == 1
    samples = _samples(text)
    method = ("rpc_method", "modelyard.v1.GatewayService/Generate")
    assert samples["modelyard_requests_total", (method, ("worker", "0"))] == 3
    assert samples["modelyard_requests_total", (method, ("worker", "1"))] == 2
    bucket = "gen_ai_server_request_duration_seconds_bucket"
    # 0.015 s falls in le=0.02 (cumulative from there); 0.5 s in le=0.64.
    assert samples[bucket, (("le", "0.01"), method, ("worker", "0"))] == 0
    assert samples[bucket, (("le", "0.02"), method, ("worker", "0"))] == 3
    assert samples[bucket, (("le", "0.32"), method, ("worker", "1"))] == 0
    assert samples[bucket, (("le", "0.64"), method, ("worker", "1"))] == 2
    assert samples[bucket, (("le", "+Inf"), method, ("worker", "1"))] == 2
    count = "gen_ai_server_request_duration_seconds_count"
    assert samples[count, (method, ("worker", "0"))] == 3
    assert samples["gen_ai_server_request_duration_seconds_sum", (method, ("worker", "1"))] == 1.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_primary_s_scrape_reads_its_workers_and_leaves_out_one_that_is_gone() -> None:
    primary = await start_metrics_listener(_meters(1, 0.01), "127.0.0.1:0")
    worker = await start_metrics_listener(_meters(4, 0.01), "127.0.0.1:0")
    gone = f"http://127.0.0.1:{_closed_port()}/metrics"
    try:
        primary.workers = lambda: [("1", worker.url), ("2", gone)]
        async with aiohttp.ClientSession() as session, session.get(primary.url) as resp:
            samples = _samples(await resp.read())
        method = ("rpc_method", "modelyard.v1.GatewayService/Generate")
        assert samples["modelyard_requests_total", (method, ("worker", "0"))] == 1
        assert samples["modelyard_requests_total", (method, ("worker", "1"))] == 4
        assert not [key for key in samples if ("worker", "2") in key[1]]
        async with aiohttp.ClientSession() as session:
            assert [w for w, _ in await scrape(session, [("1", worker.url), ("2", gone)])] == ["1"]
        primary.workers = list  # no workers now: the primary's own text, unlabelled
        async with aiohttp.ClientSession() as session, session.get(primary.url) as resp:
            assert await resp.read() == exposition(primary.meters)
    finally:
        await primary.stop()
        await worker.stop()
