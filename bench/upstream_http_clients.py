"""CPU per streamed chat completion of the two upstream HTTP clients: aiohttp and
backends/http1.py (the OpenAI wire's chat calls), against the fake upstream.

Each client streams the fake's answer (`bench/fake_openai_upstream.py`, its own
process) `--requests` times with `--in-flight` calls outstanding, after a warm-up;
this process's CPU (user + system) per request is what the client costs. Rounds
alternate the clients.

    .venv/bin/python bench/upstream_http_clients.py [--requests 6000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "services"), str(ROOT / "bench")]

import aiohttp  # noqa: E402
from fake_openai_upstream import MODEL, UpstreamProcess  # noqa: E402

from modelyard.backends.http1 import Http1Pool  # noqa: E402

BODY = json.dumps(
    {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 16,
    }
).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer bench"}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(name: str, url: str, requests: int, in_flight: int) -> float:
    """CPU µs per request of client `name`; checks every answer's length is the same."""
    close: Callable[[], Awaitable[None]]
    if name == "aiohttp":
        connector = aiohttp.TCPConnector(limit=in_flight + 4, keepalive_timeout=60)
        session = aiohttp.ClientSession(connector=connector)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=120)

        async def one() -> int:
            got = 0
            async with session.post(
                f"{url}/v1/chat/completions", data=BODY, headers=HEADERS, timeout=timeout
            ) as resp:
                async for piece in resp.content.iter_any():
                    got += len(piece)
            return got

        close = session.close
    else:
        pool = Http1Pool(f"{url}/v1", connect_timeout_s=5)

        async def one() -> int:
            got = 0
            async with await pool.post("/chat/completions", BODY, HEADERS, 120) as resp:
                async for piece in resp.iter_any():
                    got += len(piece)
            return got

        close = pool.close
    sizes: set[int] = set()

    async def worker(n: int) -> None:
        for _ in range(n):
            sizes.add(await one())

    await asyncio.gather(*(worker(50) for _ in range(in_flight)))  # warm-up
    before, started = cpu_s(), time.perf_counter()
    await asyncio.gather(*(worker(requests // in_flight) for _ in range(in_flight)))
    spent, wall = cpu_s() - before, time.perf_counter() - started
    await close()
    if len(sizes) != 1:
        raise RuntimeError(f"{name}: answers of different lengths {sorted(sizes)}")
    done = requests // in_flight * in_flight
    print(f"{name:>8}: {spent / done * 1e6:6.1f} us CPU per request, {done / wall:6.0f} req/s")
    return spent / done * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with UpstreamProcess() as upstream:
        for _ in range(args.rounds):
            for name in ("aiohttp", "http1"):
                asyncio.run(measure(name, upstream.url, args.requests, args.in_flight))
    return 0


if __name__ == "__main__":
    sys.exit(main())
