"""What the modelyard gateway adds on top of calling an OpenAI-compatible upstream directly.

One run, everything on 127.0.0.1, three processes: the fake upstream
(bench/fake_openai_upstream.py), a modelyard stack (`modelyard serve gateway
registry backend-openai-compat`, its backend pointed at the upstream by
``CUSTOM_AI_PROVIDER_URL``) and this process, the load generator. It measures

* direct: a streaming chat completion to the upstream with aiohttp;
* gateway: ``GatewayService.GenerateStream`` and ``Generate`` over grpc.aio;

each at one request in flight (latency) and at N in flight (throughput), then
prints a markdown table and rewrites the "## Gateway overhead" section of
docs/benchmarks.md (other sections are left as they are).

With ``--loadgen go`` every path is driven instead by the compiled load
generator in bench/loadgen (built with ``go build``; it costs far less CPU per
call than grpc.aio, which shares the same cores as what is measured), and the
OpenAI edge and the direct call are measured answered whole as well as
streamed; ``--rounds`` (3) runs every path that many times in turn, and the
table gives each figure's median and spread over the rounds.

    .venv/bin/python bench/gateway_overhead.py [--sequential 2000] [--concurrent 5000]
    .venv/bin/python bench/gateway_overhead.py --loadgen go
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHONPATH = [str(ROOT / "services"), str(ROOT / "clients" / "python")]
sys.path[:0] = [p for p in PYTHONPATH if p not in sys.path]

import aiohttp  # noqa: E402
import grpc  # noqa: E402
from fake_openai_upstream import MODEL, PIECES, UpstreamProcess  # noqa: E402
from overhead_report import (  # noqa: E402
    DIRECT,
    DIRECT_WHOLE,
    EDGE,
    EDGE_WHOLE,
    Measured,
    load_average,
    render_table,
    update_docs,
)

from modelyard_client.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc  # noqa: E402

EXPECTED = "".join(PIECES)
PROMPT = "Say hello."
MAX_TOKENS = 16
PROVIDER_KEYS = ("OPENAI_API_KEY", "MISTRAL_API_KEY", "OPENROUTER_API_KEY")
HTTP_ADDRESS_ENV = "MODELYARD_HTTP_ADDRESS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GatewayProcess:
    """`modelyard serve gateway registry backend-openai-compat` in a child process."""

    def __init__(
        self,
        upstream_url: str,
        data_dir: Path,
        startup_s: float = 60.0,
        root: Path = ROOT,
        extra_args: tuple[str, ...] = (),
        python_args: tuple[str, ...] = (),
        roles: tuple[str, ...] = ("gateway", "registry", "backend-openai-compat"),
        model: str = f"custom/{MODEL}",
        workers: int = 0,
    ) -> None:
        """The stack serves its OpenAI-compatible HTTP edge too, on `http_address`.
        `root`: the checkout whose code is served (another worktree to compare);
        `extra_args` go to `modelyard serve`, `python_args` to the interpreter before
        ``-m modelyard.cli`` (``-m cProfile -o FILE`` profiles the gateway); `roles`
        are served, and the stack is up once it serves the catalog id `model`; `workers`
        (N > 0): ``modelyard up --workers N`` instead, every role, its workers' pids in
        `worker_pids`."""
        self.worker_pids: list[int] = []
        self.address = f"127.0.0.1:{free_port()}"
        self.http_address = f"127.0.0.1:{free_port()}"
        env = {k: v for k, v in os.environ.items() if k not in PROVIDER_KEYS}
        env[HTTP_ADDRESS_ENV] = self.http_address  # an older checkout ignores it
        # Metrics recorded and served as `modelyard serve` does by default, on a free port
        # so sides side by side do not meet on 9464 (an older checkout ignores it).
        env["MODELYARD_METRICS_ADDRESS"] = "127.0.0.1:0"
        paths = [str(root / "services"), str(root / "clients" / "python")]
        env.update(
            CUSTOM_AI_PROVIDER_URL=upstream_url,
            OTEL_TRACES_EXPORTER="none",
            PYTHONPATH=os.pathsep.join([*paths, env.get("PYTHONPATH", "")]),
        )
        self.log_path = data_dir / "gateway.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *python_args,
                "-m",
                "modelyard.cli",
                *(("up", "--workers", str(workers)) if workers else ("serve", *roles)),
                "--listen",
                self.address,
                "--data-dir",
                str(data_dir),
                "--grace",
                "1",
                *extra_args,
            ],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.model_id = self._wait_for_model(model, startup_s)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # read to the end so the child never blocks on a pipe
            self._lines.put(line)

    def _wait_for_model(self, model: str, timeout_s: float) -> str:
        wanted = f"model {model}"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(queue.Empty):
                line = self._lines.get(timeout=0.2)
                if line.startswith("modelyard: gateway worker "):
                    self.worker_pids.append(int(line.split("(pid ")[1].split(")")[0]))
                if wanted in line:
                    return line.split()[-1]
        self.stop()
        log = self.log_path.read_text()[-3000:]
        raise RuntimeError(f"the gateway did not serve {wanted}; its log ends:\n{log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # by its own pid
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""


Call = Callable[[], Awaitable[bool]]


async def drive(call: Call, n: int, in_flight: int) -> tuple[Tally, float]:
    """Run `n` calls with `in_flight` of them outstanding at a time; (tally, wall seconds)."""
    tally = Tally()
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            try:
                ok, why = await call(), "wrong answer"
            except Exception as exc:  # counted, not raised: the run goes on
                ok, why = False, f"{type(exc).__name__}: {exc}"[:300]
            if ok:
                tally.latencies_ms.append((time.perf_counter() - started) * 1000)
            else:
                tally.errors += 1
                tally.first_error = tally.first_error or why

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return tally, time.perf_counter() - started


def direct_call(session: aiohttp.ClientSession, base_url: str, model: str = MODEL) -> Call:
    """A streamed chat completion to `base_url` (the upstream, or the gateway's HTTP edge)."""
    url = f"{base_url}/v1/chat/completions"
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": PROMPT}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": MAX_TOKENS,
        }
    ).encode()
    headers = {"Content-Type": "application/json"}

    async def call() -> bool:
        texts: list[str] = []
        finish, done = None, False
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                return False
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    done = True
                    break
                for choice in json.loads(data).get("choices") or ():
                    texts.append((choice.get("delta") or {}).get("content") or "")
                    finish = choice.get("finish_reason") or finish
        return done and finish == "stop" and "".join(texts) == EXPECTED

    return call


def gateway_request(model_id: str) -> gateway_pb2.GenerateRequest:
    chat = common_pb2.ChatMessages(messages=[common_pb2.ChatMessage(role="user", content=PROMPT)])
    return gateway_pb2.GenerateRequest(
        model=model_id,
        input=common_pb2.Input(chat=chat),
        params=common_pb2.GenerationParams(max_tokens=MAX_TOKENS),
    )


def stream_call(stubs: list[gateway_pb2_grpc.GatewayServiceAsyncStub], model_id: str) -> Call:
    request, turn = gateway_request(model_id), iter(range(1 << 62))

    async def call() -> bool:
        texts, last = [], None
        async for chunk in stubs[next(turn) % len(stubs)].GenerateStream(request, timeout=30):
            texts.append(chunk.text)
            last = chunk
        return (
            last is not None
            and last.finish_reason == common_pb2.FINISH_REASON_STOP
            and "".join(texts) == EXPECTED
        )

    return call


def unary_call(stubs: list[gateway_pb2_grpc.GatewayServiceAsyncStub], model_id: str) -> Call:
    request, turn = gateway_request(model_id), iter(range(1 << 62))

    async def call() -> bool:
        resp = await stubs[next(turn) % len(stubs)].Generate(request, timeout=30)
        return resp.finish_reason == common_pb2.FINISH_REASON_STOP and resp.text == EXPECTED

    return call


async def measure_path(
    name: str, call: Call, args: argparse.Namespace, watched: dict[str, int]
) -> list[Measured]:
    """Warm up, then one run at 1 in flight and one at `args.in_flight`."""
    await drive(call, args.warmup, 1)
    await drive(call, args.warmup, args.in_flight)
    out = []
    for in_flight, n in ((1, args.sequential), (args.in_flight, args.concurrent)):
        cpu_before = {k: process_cpu_s(pid) for k, pid in watched.items()}
        tally, wall_s = await drive(call, n, in_flight)
        cpu_ms = {k: (process_cpu_s(pid) - cpu_before[k]) * 1000 / n for k, pid in watched.items()}
        out.append(
            Measured(
                name,
                in_flight,
                n,
                tally.latencies_ms,
                tally.errors,
                tally.first_error,
                wall_s,
                cpu_ms,
            )
        )
        print(f"  {out[-1].summary()}", flush=True)
    return out


async def run(
    args: argparse.Namespace, upstream: UpstreamProcess, gw: GatewayProcess
) -> list[Measured]:
    watched = {"loadgen": os.getpid(), "upstream": upstream.proc.pid, "gateway": gw.proc.pid}
    results = []
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        print("direct (aiohttp -> upstream)", flush=True)
        results += await measure_path(
            "direct HTTP stream", direct_call(session, upstream.url), args, watched
        )
        print("edge (aiohttp -> modelyard's OpenAI-compatible HTTP API -> upstream)", flush=True)
        edge = direct_call(session, f"http://{gw.http_address}", gw.model_id)
        results += await measure_path(EDGE, edge, args, watched)
    # A local subchannel pool per channel: each gets its own connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(gw.address, options=options) for _ in range(args.channels)
    ]
    try:
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 10) for c in channels))
        stubs: list[gateway_pb2_grpc.GatewayServiceAsyncStub] = [
            gateway_pb2_grpc.GatewayServiceStub(c) for c in channels
        ]
        print("gateway GenerateStream (grpc.aio -> modelyard -> upstream)", flush=True)
        results += await measure_path(
            "gateway GenerateStream", stream_call(stubs, gw.model_id), args, watched
        )
        print("gateway Generate", flush=True)
        results += await measure_path(
            "gateway Generate", unary_call(stubs, gw.model_id), args, watched
        )
    finally:
        for c in channels:
            await c.close(None)
    return results


# --- Go load generator (--loadgen go) ------------------------------------------------------
# The same three paths, driven by bench/loadgen (a Go program) in a child process per run.

LOADGEN_DIR = ROOT / "bench" / "loadgen"
LOADGEN_BIN = LOADGEN_DIR / "bin" / "loadgen"


def build_go_loadgen() -> Path:
    """`go build` the load generator (cached by Go); its stubs are clients/go's, committed."""
    subprocess.run(["go", "build", "-o", str(LOADGEN_BIN), "."], cwd=LOADGEN_DIR, check=True)
    return LOADGEN_BIN


def go_run(
    name: str,
    cmd: list[str],
    in_flight: int,
    n: int,
    watched: dict[str, int],
    around: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> Measured:
    """One measured run of the Go load generator; its CPU comes from its own report.

    It warms up, says so and waits (-hold), so the other processes' CPU is read
    around the measured calls only; `around`: called just before and just after them.
    """
    cmd = [*cmd, "-in-flight", str(in_flight), "-requests", str(n), "-hold", "-latencies"]
    # One P is plenty (the generator needs a fraction of a core) and spares the shared
    # cores the Go scheduler's spinning on idle Ps; an explicit GOMAXPROCS wins.
    env = {**os.environ, "GOMAXPROCS": os.environ.get("GOMAXPROCS", "1")}
    with subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        if "warm" not in proc.stdout.readline():
            proc.kill()
            raise RuntimeError(f"loadgen did not warm up: {proc.communicate()[1][-2000:]}")
        if around is not None:
            around[0]()  # just before the measured calls (bench/profile_gateway.py)
        cpu_before = {k: process_cpu_s(pid) for k, pid in watched.items()}
        out, err = proc.communicate("go\n", timeout=600)
        cpu_ms = {k: (process_cpu_s(pid) - cpu_before[k]) * 1000 / n for k, pid in watched.items()}
        if around is not None:
            around[1]()
    if proc.returncode not in (0, 1):  # 1: some calls failed, still a report
        raise RuntimeError(f"loadgen exited {proc.returncode}: {err[-2000:]}")
    report = json.loads(out)
    cpu_ms["loadgen"] = report["cpu_ms_per_req"]
    return Measured(
        name,
        in_flight,
        n,
        report.get("latencies_ms") or [],
        report["errors"],
        report["first_error"],
        report["wall_s"],
        cpu_ms,
    )


def run_go(
    args: argparse.Namespace, upstream: UpstreamProcess, gw: GatewayProcess
) -> list[Measured]:
    """Every path at 1 and at `args.in_flight` in flight, driven by bench/loadgen."""
    binary = build_go_loadgen()
    watched = {"upstream": upstream.proc.pid, "gateway": gw.proc.pid}
    common = [
        *("-prompt", PROMPT, "-max-tokens", str(MAX_TOKENS), "-warmup", str(args.warmup)),
        *("-expect-text", EXPECTED, "-expect-finish", "stop"),
    ]
    edge = f"http://{gw.http_address}"
    paths = [
        (DIRECT, "openai-stream", upstream.url, MODEL),
        (DIRECT_WHOLE, "openai", upstream.url, MODEL),
        ("gateway GenerateStream", "stream", gw.address, gw.model_id),
        ("gateway Generate", "unary", gw.address, gw.model_id),
        (EDGE, "openai-stream", edge, gw.model_id),
        (EDGE_WHOLE, "openai", edge, gw.model_id),
    ]
    results = []
    for round_ in range(args.rounds):
        for name, call, addr, model in paths:
            print(f"{name} (Go loadgen, -call {call}), round {round_ + 1}", flush=True)
            cmd = [str(binary), "-call", call, "-addr", addr, "-model", model, *common]
            cmd += ["-conns", str(args.channels)]
            for in_flight, n in ((1, args.sequential), (args.in_flight, args.concurrent)):
                measured = go_run(name, cmd, in_flight, n, watched)
                measured.round = round_
                results.append(measured)
                print(f"  {measured.summary()}", flush=True)
    return results


# --- end of the Go load generator ----------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=2000, help="requests at 1 in flight")
    parser.add_argument(
        "--concurrent", type=int, default=5000, help="requests at --in-flight in flight"
    )
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per path")
    parser.add_argument("--channels", type=int, default=1, help="gRPC channels the load shares")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="with --loadgen go: every path run this many times in turn, the spread reported",
    )
    parser.add_argument(
        "--upstream", choices=("raw", "aiohttp"), default="raw", help="fake upstream implementation"
    )
    parser.add_argument(
        "--loadgen",
        choices=("python", "go"),
        default="python",
        help="load generator: this process (aiohttp, grpc.aio) or bench/loadgen (Go)",
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="print only, leave the docs")
    args = parser.parse_args()

    load_before = load_average()
    if load_before > 0.5:
        print(f"note: 1-minute load average is {load_before:.2f}: other work skews the figures")
    with (
        tempfile.TemporaryDirectory(prefix="modelyard-bench-") as tmp,
        UpstreamProcess(args.upstream) as upstream,
    ):
        gw = GatewayProcess(upstream.url, Path(tmp))
        try:
            print(f"upstream {upstream.url}, gateway {gw.address} serving {gw.model_id}")
            print(f"load generator: {args.loadgen}", flush=True)
            if args.loadgen == "go":
                results = run_go(args, upstream, gw)
            else:
                results = asyncio.run(run(args, upstream, gw))
        finally:
            gw.stop()
            with contextlib.suppress(OSError):
                tail = gw.log_path.read_text().splitlines()[-5:]
                if any("Traceback" in line or "ERROR" in line for line in tail):
                    print("gateway log tail:\n" + "\n".join(tail), file=sys.stderr)
    load = (load_before, load_average())
    table = render_table(results)
    print("\n" + table)
    if not args.no_docs:
        update_docs(args.docs, results, args, load)
        print(f"\nupdated {args.docs}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
