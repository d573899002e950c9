"""Native core vs pure Python: token bucket, selection, balancing, A/B split.

Times each hot-path call of `modelyard._native` as Python code calls it, next to
the straightforward pure-Python version in `bench/native_reference.py`, and
rewrites the "## Native core" section of docs/benchmarks.md (appended when
missing; the rest of the file is left byte-identical).

    .venv/bin/python bench/native_core.py            # measure and write the doc
    .venv/bin/python bench/native_core.py --no-write # measure only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle, repeat
from pathlib import Path

import native_reference as ref  # a sibling: a script's folder is on sys.path

from modelyard._native import (
    Candidate,
    CandidateSet,
    Constraints,
    DeploymentPool,
    TokenBucket,
    Weights,
    assign_arm,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADING = "## Native core"
N_CANDIDATES = 100
N_DEPLOYMENTS = 100


@dataclass
class Row:
    name: str
    target: str
    native_ns: float
    reference_ns: float
    met: bool | None


def per_call_ns(call: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over `rounds` of the mean ns per call of `calls` back-to-back calls."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in repeat(None, calls):
            call()
        samples.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(samples)


def loop_overhead_ns(calls: int, rounds: int) -> float:
    def nothing() -> None:
        return None

    return per_call_ns(nothing, calls, rounds)


def candidates_native() -> CandidateSet:
    return CandidateSet(
        [
            Candidate(
                f"provider/model-{i:03d}",
                capabilities=(i * 2654435761) & 0x3FFE,
                modalities=0b10,
                context_window=4096 * (1 + i % 8),
                latency_ms=50.0 + (i * 37) % 900,
                tokens_per_second=20.0 + (i * 13) % 200,
                usd_per_input_token=(i % 10) * 1e-7,
                usd_per_output_token=(i % 10) * 3e-7,
                usd_per_request=0.0,
                reliability=0.9 + (i % 10) / 100,
                backend="api",
                healthy=i % 17 != 0,
            )
            for i in range(N_CANDIDATES)
        ]
    )


def candidates_reference() -> list[ref.RefCandidate]:
    return [
        ref.RefCandidate(
            f"provider/model-{i:03d}",
            capabilities=(i * 2654435761) & 0x3FFE,
            context_window=4096 * (1 + i % 8),
            latency_ms=50.0 + (i * 37) % 900,
            tokens_per_second=20.0 + (i * 13) % 200,
            usd_per_input_token=(i % 10) * 1e-7,
            usd_per_output_token=(i % 10) * 3e-7,
            reliability=0.9 + (i % 10) / 100,
            healthy=i % 17 != 0,
        )
        for i in range(N_CANDIDATES)
    ]


def measure(quick: bool, rounds: int) -> list[Row]:
    scale = 0.1 if quick else 1.0

    def n(calls: int) -> int:
        return max(100, int(calls * scale))

    rows = []

    # The gateway's in-process limits are one TokenBucket per scope and dimension.
    bucket = TokenBucket(1e15, 1e12)
    reference_bucket = ref.ReferenceTokenBucket(1e15, 1e12)
    take, ref_take = bucket.try_take, reference_bucket.try_take
    native = per_call_ns(lambda: take(1.0, 0.0), n(1_000_000), rounds)
    rows.append(
        Row(
            "TokenBucket.try_take (explicit now)",
            ">= 3 M decisions/s",
            native,
            per_call_ns(lambda: ref_take(1.0, 0.0), n(200_000), rounds),
            1e9 / native >= 3e6,
        )
    )
    native = per_call_ns(lambda: take(1.0), n(1_000_000), rounds)
    rows.append(Row("TokenBucket.try_take (process clock)", "", native, float("nan"), None))

    candidates, reference_candidates = candidates_native(), candidates_reference()
    constraints = Constraints(required_capabilities=0b10, prompt_tokens=1000, max_output_tokens=256)
    reference_constraints = ref.RefConstraints(
        required_capabilities=0b10, prompt_tokens=1000, max_output_tokens=256
    )
    weights = Weights(0.4, 0.3, 0.2, 0.1)
    select = candidates.select
    native = per_call_ns(lambda: select(constraints, weights).chosen, n(100_000), rounds)
    reference = per_call_ns(
        lambda: ref.reference_select(
            reference_candidates, reference_constraints, (0.4, 0.3, 0.2, 0.1)
        ),
        n(2_000),
        rounds,
    )
    rows.append(
        Row(
            f"CandidateSet.select, {N_CANDIDATES} candidates, 4 criteria",
            "<= 10 µs/call",
            native,
            reference,
            native <= 10_000,
        )
    )
    selection = select(constraints, weights)
    read = per_call_ns(lambda: [s.rejection for s in selection.scores()], n(5_000), rounds)
    rows.append(Row("Selection.scores() read, 100 results", "", read, float("nan"), None))

    deployments = [(f"10.0.{i // 250}.{i % 250}:50051", "eu", 1.0) for i in range(N_DEPLOYMENTS)]
    for strategy, ref_pick in (("least_loaded", "least_loaded"), ("p2c", "p2c")):
        pool = DeploymentPool(deployments, seed=1)
        reference_pool = ref.ReferencePool(N_DEPLOYMENTS, seed=1)
        for i in range(N_DEPLOYMENTS):
            # Uneven load and latency, as in a busy pool.
            for _ in range(i % 5):
                pool.start(i)
            reference_pool.in_flight[i] = i % 5
            pool.start(i)
            pool.finish(i, 10.0 + i % 7, True, now=0.0)
            reference_pool.ewma[i] = 10.0 + i % 7
        pick = pool.pick
        native = per_call_ns(lambda: pick(strategy, "", 0.0), n(1_000_000), rounds)  # noqa: B023
        reference = per_call_ns(getattr(reference_pool, ref_pick), n(50_000), rounds)
        rows.append(
            Row(
                f"DeploymentPool.pick({strategy!r}), {N_DEPLOYMENTS} deployments",
                "<= 1 µs/pick",
                native,
                reference,
                native <= 1_000,
            )
        )

    keys = [f"tenant-{i % 13}/user-{i}" for i in range(1024)]
    arm_weights = [0.5, 0.3, 0.2]
    key_iter = cycle(keys)
    native = per_call_ns(lambda: assign_arm(next(key_iter), arm_weights), n(1_000_000), rounds)
    key_iter = cycle(keys)
    reference = per_call_ns(lambda: ref.assign_arm(next(key_iter), arm_weights), n(200_000), rounds)
    rows.append(Row("assign_arm, 3 arms", "", native, reference, None))
    return rows


def machine() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"- CPUs: {os.cpu_count()} (`os.cpu_count()`), {cpu}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
        "- `modelyard._native` built by `maturin develop --release` (thin LTO, 1 codegen unit)",
    ]


def fmt_ns(ns: float) -> str:
    if ns != ns:  # NaN
        return "-"
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def section(
    rows: list[Row], rounds: int, load_before: float, load_after: float, overhead: float
) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        HEADING,
        "",
        f"Measured {today} by `bench/native_core.py` (this section is rewritten by it: "
        "`.venv/bin/python bench/native_core.py`).",
        "",
        "### Machine",
        "",
        *machine(),
        f"- 1-minute load average {load_before:.2f} before the run, {load_after:.2f} after; "
        "other jobs share the machine, so figures are upper bounds",
        "",
        "### Method",
        "",
        f"One process, one thread. Each figure is the median over {rounds} rounds of the mean time "
        "per call of a tight Python loop (`for _ in itertools.repeat(None, n): call()`), "
        "so it includes the Python call and argument conversion, as the gateway sees it. "
        f"An empty loop of Python calls costs {overhead:.0f} ns per iteration on this "
        "machine and is not subtracted. *Reference* is the straightforward pure-Python "
        "version of the same algorithm in `bench/native_reference.py` (same rules with "
        "lists and dataclasses; its selection checks only the constraints these inputs "
        "exercise, which flatters it). Inputs: a token bucket that always admits; 100 candidates "
        "(a few unhealthy, varied latency, throughput, prices and capabilities) with a "
        "capability, a prompt and an output budget as constraints; a pool of 100 "
        "deployments with uneven in-flight counts and latencies; 1024 distinct keys "
        "over 3 arms.",
        "",
        "### Results",
        "",
        "| call | native | per second | reference (Python) | speed-up | target | met |",
        "|---|--:|--:|--:|--:|---|---|",
    ]
    for r in rows:
        speedup = (
            "-" if r.reference_ns != r.reference_ns else f"{r.reference_ns / r.native_ns:.0f}x"
        )
        met = "-" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(
            f"| {r.name} | {fmt_ns(r.native_ns)} | {1e9 / r.native_ns:,.0f} | "
            f"{fmt_ns(r.reference_ns)} | {speedup} | {r.target or '-'} | {met} |"
        )
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace the section (heading to the next `## ` or the end) or append it."""
    doc = DOC.read_text(encoding="utf-8")
    start = doc.find(f"\n{HEADING}\n")
    if start == -1:
        DOC.write_text(doc.rstrip("\n") + "\n\n" + text, encoding="utf-8")
        return
    start += 1
    end = doc.find("\n## ", start + len(HEADING))
    tail = "" if end == -1 else doc[end:]
    body = text if end == -1 else text.rstrip("\n") + "\n"
    DOC.write_text(doc[:start] + body + tail, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--quick", action="store_true", help="a tenth of the calls")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    overhead = loop_overhead_ns(1_000_000, 5)
    rounds = 5 if args.quick else 9
    rows = measure(args.quick, rounds)
    text = section(rows, rounds, load_before, os.getloadavg()[0], overhead)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote the {HEADING!r} section of {DOC}")


if __name__ == "__main__":
    main()
