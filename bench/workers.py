"""Gateway workers: `modelyard up --workers N` against one process, on the same machine.

One run, everything on 127.0.0.1: the fake OpenAI upstream
(bench/fake_openai_upstream.py), ``modelyard up --workers W`` for each W in
``--workers`` (its custom backend pointed at the upstream), and the Go load
generator (bench/loadgen) opening ``--conns`` connections (the kernel hands
each connection to one of the processes). Each round starts a fresh stack per
W, in turn, and drives GenerateStream and Generate at ``--in-flight``; the
table gives the median over the rounds (range), the gateway's CPU per call
summed over all its processes, and rewrites the "## Gateway workers" section
of docs/benchmarks.md.

    .venv/bin/python bench/workers.py [--rounds 3] [--requests 4000] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_upstream import UpstreamProcess
from gateway_overhead import (
    EXPECTED,
    MAX_TOKENS,
    PROMPT,
    ROOT,
    GatewayProcess,
    build_go_loadgen,
    go_run,
)
from overhead_report import Measured, load_average, machine, publish, spread

from modelyard.backends.local.model_files import ensure_default_model

SECTION = "## Gateway workers"
CALLS = (("GenerateStream", "stream"), ("Generate", "unary"))


def one_stack(
    args: argparse.Namespace, binary: Path, upstream: UpstreamProcess, workers: int
) -> dict[str, Measured]:
    """A fresh `up --workers` stack, both calls measured on it."""
    models = Path.home() / ".cache" / "modelyard-bench" / "models"
    models.mkdir(parents=True, exist_ok=True)
    ensure_default_model(models)
    with tempfile.TemporaryDirectory() as tmp:
        gw = GatewayProcess(
            upstream.url, Path(tmp), extra_args=("--models-dir", str(models)), workers=workers
        )
        try:
            watched = {"upstream": upstream.proc.pid, "gateway": gw.proc.pid}
            watched.update({f"worker {i}": pid for i, pid in enumerate(gw.worker_pids, 1)})
            got = {}
            for name, call in CALLS:
                cmd = [str(binary), "-call", call, "-addr", gw.address, "-model", gw.model_id]
                cmd += ["-prompt", PROMPT, "-max-tokens", str(MAX_TOKENS), "-warmup", "200"]
                cmd += ["-expect-text", EXPECTED, "-expect-finish", "stop"]
                cmd += ["-conns", str(args.conns)]
                got[name] = go_run(name, cmd, args.in_flight, args.requests, watched)
                print(f"  workers={workers} {got[name].summary()}", flush=True)
            return got
        finally:
            gw.stop()


def gateway_cpu(m: Measured) -> float:
    """The gateway's CPU per call over every one of its processes."""
    return sum(v for k, v in m.cpu_ms_per_req.items() if k == "gateway" or k.startswith("worker"))


def table(results: dict[tuple[int, str], list[Measured]], args: argparse.Namespace) -> str:
    lines = [
        SECTION,
        "",
        f"`bench/workers.py --rounds {args.rounds} --requests {args.requests} --in-flight "
        f"{args.in_flight} --conns {args.conns}`: `modelyard up --workers W` (every role, "
        "default configuration), the fake upstream and the Go load generator on one "
        f"machine, load average {load_average():.2f} at the end. Median over the rounds "
        "(lowest to highest); gateway CPU is every gateway process's, per call.",
        "",
        *machine(),
        "",
        "| call | workers | req/s | p50 ms | p99 ms | gateway CPU ms/call | errors |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, _ in CALLS:
        for workers in args.workers:
            runs = results[(workers, name)]
            lines.append(
                f"| {name} | {workers} | {spread([m.requests / m.wall_s for m in runs], 0)} | "
                f"{spread([m.pct(50) for m in runs])} | {spread([m.pct(99) for m in runs])} | "
                f"{spread([gateway_cpu(m) for m in runs], 3)} | {sum(m.errors for m in runs)} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-docs", action="store_true", help="print the table only")
    args = parser.parse_args()
    binary = build_go_loadgen()
    results: dict[tuple[int, str], list[Measured]] = {}
    with UpstreamProcess() as upstream:
        for round_no in range(args.rounds):
            order = args.workers if round_no % 2 == 0 else args.workers[::-1]
            for workers in order:
                print(f"round {round_no + 1}, workers={workers}", flush=True)
                for name, m in one_stack(args, binary, upstream, workers).items():
                    results.setdefault((workers, name), []).append(m)
    text = table(results, args)
    publish(text, SECTION, None if args.no_docs else ROOT / "docs" / "benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
