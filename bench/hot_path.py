"""The healthy hot path as a user runs it, every way in, rounds interleaved, with the spread.

One fake upstream (bench/fake_openai_upstream.py) and one modelyard stack (`serve gateway
registry backend-openai-compat`) in the **measured configuration**: API keys required
(the load presents a key created for it), per-key rate limits checked,
the response cache on (each call's prompt is numbered, so every lookup is made and
misses), metrics recorded and served, tracing on with its exporter off. Driven by the Go
load generator (bench/loadgen), round after round, each round running every path at 1 and
at ``--in-flight`` in flight:

* direct: the upstream's chat completion, streamed and not;
* gRPC: ``GatewayService.Generate`` and ``GenerateStream``;
* the OpenAI-compatible edge: ``POST /v1/chat/completions``, streamed and not.

Every path sees the machine's state of its round, so the table's medians and ranges over
the rounds are comparable; a path's added latency is taken against the direct call of
the same kind (streamed or not) in the same round. The gateway's CPU per call comes from
/proc. Prints the table; ``--docs`` rewrites the "## The hot path" section of
docs/benchmarks.md.

    .venv/bin/python bench/hot_path.py [--rounds 5] [--sequential 1000] [--concurrent 3000]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_upstream import MODEL, UpstreamProcess
from gateway_overhead import (
    EXPECTED,
    MAX_TOKENS,
    PROMPT,
    ROOT,
    GatewayProcess,
    build_go_loadgen,
    go_run,
)
from overhead_report import Measured, load_average, machine, replace_section, spread

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
SERVICE_KEY = "bench-service-key-0123456789abcdef"
CONFIG = """
model_system:
  security:
    auth: {required: true}
  rate_limits:
    per_key: {requests_per_minute: 100000000, tokens_per_minute: 100000000000}
  gateway:
    cache: {enabled: true, ttl: 1h, max_entries: 10000}
"""
SECTION = "## The hot path"


@dataclass(frozen=True)
class Path_:
    name: str
    call: str  # the load generator's -call
    kind: str  # "stream" or "whole": which direct call it is compared with
    direct: bool = False


PATHS = (
    Path_("direct, streamed", "openai-stream", "stream", direct=True),
    Path_("direct, not streamed", "openai", "whole", direct=True),
    Path_("gRPC GenerateStream", "stream", "stream"),
    Path_("gRPC Generate", "unary", "whole"),
    Path_("edge, streamed", "openai-stream", "stream"),
    Path_("edge, not streamed", "openai", "whole"),
)


def client_key(gw: GatewayProcess) -> str:
    """A key created for the load, as an operator creates one (`modelyard keys create`)."""
    out = subprocess.run(
        [
            sys.executable,
            *("-m", "modelyard.cli", "keys", "create", "--owner", "bench"),
            *("--address", gw.address, "--api-key", ADMIN_KEY),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'services'}:{ROOT / 'clients' / 'python'}"},
    ).stdout
    found = re.search(r"secret \(shown once\): (\S+)", out)
    if found is None:
        raise RuntimeError(f"no key in: {out!r}")
    return found.group(1)


def refused_without_key(binary: Path, gw: GatewayProcess) -> None:
    """The configuration measured is the one claimed: a call without a key is refused."""
    for call, addr in (("unary", gw.address), ("openai", f"http://{gw.http_address}")):
        cmd = [str(binary), "-call", call, "-addr", addr, "-model", gw.model_id, "-requests", "1"]
        report = subprocess.run(cmd, capture_output=True, text=True).stdout
        if '"errors":1' not in report.replace(" ", ""):
            raise RuntimeError(f"a {call} call without a key was not refused: {report}")


def table(rounds: list[dict[tuple[str, int], Measured]], in_flights: tuple[int, int]) -> str:
    lines = [
        "| path | in flight | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s "
        "| gateway CPU ms/call | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for path in PATHS:
        direct = next(p for p in PATHS if p.direct and p.kind == path.kind)
        for in_flight in in_flights:
            runs = [r[(path.name, in_flight)] for r in rounds]
            added50 = [
                m.pct(50) - r[(direct.name, in_flight)].pct(50)
                for m, r in zip(runs, rounds, strict=True)
            ]
            added99 = [
                m.pct(99) - r[(direct.name, in_flight)].pct(99)
                for m, r in zip(runs, rounds, strict=True)
            ]
            cpu = [m.cpu_ms_per_req["gateway"] for m in runs]
            lines.append(
                f"| {path.name} | {in_flight} | {spread([m.pct(50) for m in runs])} "
                f"| {spread([m.pct(99) for m in runs])} "
                f"| {'-' if path.direct else spread(added50)} "
                f"| {'-' if path.direct else spread(added99)} "
                f"| {spread([m.rps for m in runs], 0)} "
                f"| {'-' if path.direct else spread(cpu, 3)} "
                f"| {sum(m.errors for m in runs)} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sequential", type=int, default=1000, help="calls at 1 in flight")
    parser.add_argument("--concurrent", type=int, default=3000, help="calls at --in-flight")
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--docs", type=Path, help="rewrite this file's hot-path section")
    args = parser.parse_args()
    os.environ |= {"MODELYARD_ADMIN_KEY": ADMIN_KEY, "MODELYARD_SERVICE_KEY": SERVICE_KEY}
    binary = build_go_loadgen()
    load = load_average()
    with tempfile.TemporaryDirectory() as tmp, UpstreamProcess() as upstream:
        config = Path(tmp) / "measured.yaml"
        config.write_text(CONFIG)
        gw = GatewayProcess(upstream.url, Path(tmp), extra_args=("--config", str(config)))
        try:
            key = client_key(gw)
            refused_without_key(binary, gw)
            watched = {"upstream": upstream.proc.pid, "gateway": gw.proc.pid}
            common = [
                *("-prompt", PROMPT, "-max-tokens", str(MAX_TOKENS), "-warmup", str(args.warmup)),
                *("-expect-text", EXPECTED, "-expect-finish", "stop", "-vary-prompt"),
            ]
            in_flights = (1, args.in_flight)
            rounds: list[dict[tuple[str, int], Measured]] = []
            for i in range(args.rounds):
                got: dict[tuple[str, int], Measured] = {}
                for path in PATHS:
                    if path.direct:
                        addr, model, auth = upstream.url, MODEL, []
                    elif path.call in ("stream", "unary"):
                        addr, model, auth = gw.address, gw.model_id, ["-api-key", key]
                    else:
                        addr, model = f"http://{gw.http_address}", gw.model_id
                        auth = ["-api-key", key]
                    cmd = [str(binary), "-call", path.call, "-addr", addr, "-model", model]
                    for in_flight, n in zip(
                        in_flights, (args.sequential, args.concurrent), strict=True
                    ):
                        got[(path.name, in_flight)] = go_run(
                            path.name, [*cmd, *common, *auth], in_flight, n, watched
                        )
                rounds.append(got)
                summary = ", ".join(
                    f"{p.name} {got[(p.name, args.in_flight)].rps:.0f}/s" for p in PATHS
                )
                print(f"round {i + 1}: {summary}", flush=True)
        finally:
            gw.stop()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    text = "\n".join(
        [
            SECTION,
            "",
            f"`bench/hot_path.py --rounds {args.rounds}` at `{commit}`, {when}: "
            f"{args.sequential} calls at 1 in flight and {args.concurrent} at "
            f"{args.in_flight} per path and round, rounds interleaved; the measured "
            "configuration (keys required, per-key rate limits, the response cache "
            "looked up and missed, metrics, tracing without exporter). Medians over the "
            "rounds, the lowest and highest in brackets; added latency against the direct "
            f"call of the same kind in the same round. Load average at start {load:.2f}.",
            "",
            *machine(),
            "",
            table(rounds, in_flights),
            "",
        ]
    )
    print(text)
    if args.docs is not None:
        replace_section(args.docs, SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
