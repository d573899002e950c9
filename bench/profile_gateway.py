"""Where the gateway's CPU goes on the healthy path: cProfile per call, or two profiles compared.

Profile: one fake upstream, one gateway (this checkout, or ``--root``) run by
bench/profiled_child.py, the Go load generator's warm-up and then ``--requests``
calls at 32 in flight, profiled (cProfile, switched on by SIGUSR1 just before
them and off by SIGUSR2 just after: no imports, start-up or warm-up in it); the
functions costing most of their own time per call are printed.

    .venv/bin/python bench/profile_gateway.py profile --call stream --out /tmp/after.prof
    .venv/bin/python bench/profile_gateway.py compare /tmp/before.prof /tmp/after.prof \\
        --requests 3300

Compare: per function, calls and own microseconds per call in each profile and the
difference, largest first — what a change added to or took off the hot path. Both
profiles must cover the same number of calls (``--requests``).
cProfile inflates Python-level costs; read the call counts as exact and the times
as relative.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import sys
import tempfile
import time
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

Key = tuple[str, int, str]


def profile(args: argparse.Namespace) -> int:
    binary = build_go_loadgen()
    out = Path(args.out).resolve()
    with tempfile.TemporaryDirectory(prefix="modelyard-profile-") as tmp, UpstreamProcess() as up:
        extra = ("--config", str(Path(args.config).resolve())) if args.config else ()
        child = Path(__file__).resolve().parent / "profiled_child.py"
        gw = GatewayProcess(
            up.url, Path(tmp), root=args.root, extra_args=extra, python_args=(str(child), str(out))
        )
        try:
            edge = args.call.startswith("openai")  # the OpenAI edge, over HTTP
            addr = f"http://{gw.http_address}" if edge else gw.address
            cmd = [str(binary), "-call", args.call, "-addr", addr, "-model", gw.model_id]
            cmd += ["-prompt", PROMPT, "-max-tokens", str(MAX_TOKENS), "-warmup", "300"]
            cmd += ["-expect-text", EXPECTED, "-expect-finish", "stop"]
            pid = gw.proc.pid
            around = (lambda: os.kill(pid, signal.SIGUSR1), lambda: os.kill(pid, signal.SIGUSR2))
            m = go_run("profiled", cmd, 32, args.requests, {"gateway": pid}, around)
            print(m.summary())
            time.sleep(1.0)  # the dump, written by the child's signal handler
        finally:
            gw.stop()
    print(f"wrote {out} ({args.requests} measured calls)")
    show(out, args.requests, args.top)
    return 0


def _own_times(path: Path) -> dict[Key, tuple[int, float]]:
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    return {key: (int(value[1]), float(value[2])) for key, value in stats.items()}


def _name(key: Key) -> str:
    file, line, func = key
    short = file.split("/services/")[-1].split("/site-packages/")[-1]
    return f"{short}:{line}({func})"


def show(path: Path, calls: int, top: int) -> None:
    rows = sorted(_own_times(path).items(), key=lambda kv: -kv[1][1])[:top]
    total = sum(t for _, t in _own_times(path).values()) / calls * 1e6
    print(f"own time per gateway call, {total:.0f} us in all (cProfile-inflated)")
    for key, (n, t) in rows:
        print(f"{t / calls * 1e6:8.1f} us {n / calls:6.1f} x  {_name(key)}")


def compare(args: argparse.Namespace) -> int:
    a, b = _own_times(Path(args.before)), _own_times(Path(args.after))
    n = args.requests
    rows = []
    for key in a.keys() | b.keys():
        (ca, ta), (cb, tb) = a.get(key, (0, 0.0)), b.get(key, (0, 0.0))
        rows.append((tb / n - ta / n, ca / n, cb / n, ta / n, tb / n, key))
    rows.sort(key=lambda r: -abs(r[0]))
    before, after = sum(t for _, t in a.values()) / n, sum(t for _, t in b.values()) / n
    print(f"own time per call: before {before * 1e6:.0f} us, after {after * 1e6:.0f} us")
    print(f"{'diff us':>8} {'calls a':>8} {'calls b':>8} {'us a':>7} {'us b':>7}  function")
    for diff, ca, cb, ta, tb, key in rows[: args.top]:
        cells = f"{diff * 1e6:8.2f} {ca:8.2f} {cb:8.2f} {ta * 1e6:7.2f} {tb * 1e6:7.2f}"
        print(f"{cells}  {_name(key)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("profile", help="profile a gateway under load")
    calls = ("stream", "unary", "openai-stream")  # the last: the OpenAI edge, streamed
    p.add_argument("--call", choices=calls, default="stream")
    p.add_argument("--requests", type=int, default=3000, help="profiled calls after 300 warm-up")
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout to serve")
    p.add_argument("--config", help="a config file to serve with (`modelyard serve --config`)")
    p.add_argument("--out", required=True)
    p.add_argument("--top", type=int, default=40)
    c = sub.add_parser("compare", help="compare two profiles of the same number of calls")
    c.add_argument("before")
    c.add_argument("after")
    c.add_argument("--requests", type=int, required=True, help="calls each profile covers")
    c.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    return profile(args) if args.what == "profile" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
