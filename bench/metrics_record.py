"""What recording one gateway answer costs: an `AnswerMeasure` kept in the loop over a stream of
three chunks against the same stream bare, and one `modelyard.requests` count.

    .venv/bin/python bench/metrics_record.py [--answers N]

Prints µs per answer (CPU of this process, best of five rounds); the issue's budget for
metrics and tracking is 0.1 ms a request (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncGenerator

from modelyard.meters import Meters
from modelyard.meters.gateway_calls import GatewayCallMeter
from modelyard_client.v1 import gateway_pb2

REQUEST = gateway_pb2.GenerateRequest(model="openai/gpt-5")
REQUEST.input.text = "hi"


def _chunks() -> list[gateway_pb2.GenerateChunk]:
    first = gateway_pb2.GenerateChunk(model_id="openai/gpt-5", text="hel")
    last = gateway_pb2.GenerateChunk(text="!")
    last.usage.input_tokens, last.usage.output_tokens, last.usage.cost_usd = 7, 3, 0.0001
    return [first, gateway_pb2.GenerateChunk(text="lo"), last]


async def _stream(
    chunks: list[gateway_pb2.GenerateChunk],
) -> AsyncGenerator[gateway_pb2.GenerateChunk, None]:
    for chunk in chunks:
        yield chunk


async def _round(n: int, meter: GatewayCallMeter | None) -> float:
    chunks = _chunks()
    started = time.process_time()
    for _ in range(n):
        stream = _stream(chunks)
        if meter is None:
            async for _chunk in stream:
                pass
            continue
        # As GatewayServicer.stream measures a stream: in the loop that passes it on.
        measure = meter.measure(REQUEST, time.perf_counter())
        async for chunk in stream:
            measure.seen(chunk)
        measure.ended(None)
    return (time.process_time() - started) / n * 1e6


async def main(n: int) -> None:
    meters = Meters()
    meter = GatewayCallMeter(meters, lambda _: "openai", lambda _: True)
    bare = min([await _round(n, None) for _ in range(5)])
    measured = min([await _round(n, meter) for _ in range(5)])
    attrs = (("rpc.method", "modelyard.v1.GatewayService/Generate"),)
    started = time.process_time()
    for _ in range(n):
        meters.requests.add(1, attrs)
    count = (time.process_time() - started) / n * 1e6
    print(f"bare stream of 3 chunks: {bare:.2f} µs; measured: {measured:.2f} µs")
    print(f"recording one answer: {measured - bare:.2f} µs; one request count: {count:.2f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--answers", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().answers))
