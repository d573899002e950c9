"""Gateway CPU per call of two (or more) checkouts, measured side by side.

A change's cost on the healthy path is often a few per cent, below what one run of
bench/gateway_overhead.py can tell apart on a noisy 2-core machine (±15 % between
runs). This starts one fake upstream and one gateway per side at once, then runs
the Go load generator against each side in turn, round after round, so every side
sees the same machine state within a round. It prints, per side, the median and
the minimum gateway CPU ms per call and requests/s over the rounds, and each
side's median against the first side's.

    .venv/bin/python bench/compare_overhead.py --rounds 12 --call stream \\
        before=/tmp/before after=.

A side is ``label=checkout``: a directory holding this repository's tree with its
generated stubs and a built ``modelyard/_native`` (a worktree at an older commit:
``git worktree add DIR REV``, then link ``.venv``, copy the ``_native`` shared
object, run ``scripts/genproto.py``). ``label=checkout:config.yaml`` serves that
side with ``--config``. Every side runs with this interpreter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_upstream import MODEL, UpstreamProcess
from gateway_overhead import (
    EXPECTED,
    MAX_TOKENS,
    PROMPT,
    GatewayProcess,
    build_go_loadgen,
    go_run,
)


def parse_side(text: str) -> tuple[str, Path, tuple[str, ...]]:
    label, sep, rest = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"a side is label=checkout[:config], got {text!r}")
    root, _, config = rest.partition(":")
    path = Path(root).resolve()
    if not (path / "services" / "modelyard").is_dir():
        raise argparse.ArgumentTypeError(f"{path} holds no services/modelyard")
    return label, path, ("--config", str(Path(config).resolve())) if config else ()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sides", nargs="+", type=parse_side, help="label=checkout[:config]")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument(
        "--call",
        choices=("stream", "unary", "openai-stream"),
        default="stream",
        help="GenerateStream, Generate, or the OpenAI edge's streamed chat completion",
    )
    parser.add_argument("--requests", type=int, default=3000, help="calls per side per round")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=300)
    args = parser.parse_args()

    binary = build_go_loadgen()
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in args.sides}
    rps: dict[str, list[float]] = {label: [] for label, _, _ in args.sides}
    with tempfile.TemporaryDirectory(prefix="modelyard-compare-") as tmp, UpstreamProcess() as up:
        gateways: dict[str, GatewayProcess] = {}
        try:
            for label, root, extra in args.sides:
                data_dir = Path(tmp) / label
                data_dir.mkdir()
                gateways[label] = GatewayProcess(up.url, data_dir, root=root, extra_args=extra)
                print(f"{label}: {root} on {gateways[label].address}", flush=True)
            for r in range(args.rounds):
                order = list(gateways) if r % 2 == 0 else list(reversed(gateways))
                for label in order:
                    gw = gateways[label]
                    addr = gw.address
                    if args.call == "openai-stream":
                        addr = f"http://{gw.http_address}"
                    cmd = [str(binary), "-call", args.call, "-addr", addr]
                    cmd += ["-model", gw.model_id, "-prompt", PROMPT]
                    cmd += ["-max-tokens", str(MAX_TOKENS), "-warmup", str(args.warmup)]
                    cmd += ["-expect-text", EXPECTED, "-expect-finish", "stop"]
                    m = go_run(label, cmd, args.in_flight, args.requests, {"gateway": gw.proc.pid})
                    if m.errors:
                        print(f"{label}: {m.errors} errors, first: {m.first_error}", flush=True)
                        return 1
                    cpu[label].append(m.cpu_ms_per_req["gateway"])
                    rps[label].append(m.rps)
                line = "  ".join(f"{k} {v[-1]:.3f}" for k, v in cpu.items())
                print(f"round {r + 1:>2}: gateway CPU ms/call  {line}", flush=True)
        finally:
            for gw in gateways.values():
                gw.stop()
    first = statistics.median(cpu[args.sides[0][0]])
    print(f"\n{args.call}, {args.in_flight} in flight, {args.rounds} rounds ({MODEL} upstream)")
    for label, values in cpu.items():
        med = statistics.median(values)
        print(
            f"  {label:>10}: CPU ms/call median {med:.3f} min {min(values):.3f}"
            f" ({(med / first - 1) * 100:+.1f} %), req/s median {statistics.median(rps[label]):.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
