"""What one async-generator layer costs a one-chunk stream, here.

A stream's chunk crosses one async generator per layer of the gateway (the servicer,
the core, the attempt, the backend pool, the engine, the stream reader), each opened
with `aclosing` as the gateway's are. This builds chains of 0 to N such layers over a
one-item source and reads each to its end, many times, and prints the microseconds per
stream: what taking layers out could save.

    .venv/bin/python bench/generator_layers.py --streams 50000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing


async def _source() -> AsyncGenerator[int, None]:
    yield 1


async def _layer(inner: AsyncGenerator[int, None]) -> AsyncGenerator[int, None]:
    async with aclosing(inner) as items:
        async for item in items:
            yield item


async def _per_stream_us(layers: int, streams: int) -> float:
    started = time.perf_counter()
    for _ in range(streams):
        chain = _source()
        for _ in range(layers):
            chain = _layer(chain)
        async with aclosing(chain) as items:
            async for _ in items:
                pass
    return (time.perf_counter() - started) / streams * 1e6


async def _measure(max_layers: int, streams: int, rounds: int) -> None:
    print(f"{'layers':>6} {'us per stream':>14} {'us per layer':>13}")
    base = 0.0
    for layers in range(max_layers + 1):
        us = statistics.median([await _per_stream_us(layers, streams) for _ in range(rounds)])
        if layers == 0:
            base = us
        per = f"{(us - base) / layers:13.2f}" if layers else f"{'-':>13}"
        print(f"{layers:6d} {us:14.2f} {per}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=7)
    parser.add_argument("--streams", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(_measure(args.layers, args.streams, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
