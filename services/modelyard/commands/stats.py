"""`modelyard stats`: a gateway's live figures, per model and deployment or per provider.

The figures are the gateway's rolling window (`GetModelMetrics`, `GetProviderMetrics`:
the last 60 s of attempts): requests, errors, latency p50/p95/p99, time to the first
piece, tokens/s, requests/s and cost per request. ``--model`` shows one model,
``--providers`` one row per provider; ``--watch [SECONDS]`` redraws the table every
SECONDS (2) until Ctrl-C (exit 130), the screen cleared first when stdout is a
terminal; ``--json`` prints the models (or providers) as the proto has them, one
document per refresh.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from modelyard.commands.client_options import add_address, add_json, json_document

if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

    from modelyard_client.v1 import gateway_pb2

WATCH_S = 2.0  # `--watch` alone: redraw this often
CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase the screen


def register(sub: Any) -> None:
    """Add ``stats`` to the CLI's subparsers."""
    stats = sub.add_parser(
        "stats", help="a gateway's live figures per model and deployment (or per provider)"
    )
    stats.add_argument("--model", default="", help="only this model (a catalog id)")
    stats.add_argument(
        "--providers", action="store_true", help="one row per provider, its models together"
    )
    stats.add_argument(
        "--watch",
        nargs="?",
        type=_interval,
        const=WATCH_S,
        default=None,
        metavar="SECONDS",
        help=f"redraw every SECONDS (default {WATCH_S:g}) until Ctrl-C",
    )
    add_address(stats)
    add_json(stats)
    stats.set_defaults(run=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    from modelyard.security.client_channel import channel_for

    if args.providers and args.model:
        raise SystemExit("modelyard stats: --model and --providers do not go together")
    with channel_for(args) as channel:
        if args.watch is None:
            print(_render(args, channel), flush=True)
            return 0
        clear = CLEAR if sys.stdout.isatty() else ""
        for shown in refreshes(lambda: _render(args, channel), args.watch):
            heading = f"modelyard stats, {time.strftime('%H:%M:%S')}, every {args.watch:g}s"
            print(f"{clear}{heading} (Ctrl-C to stop)\n{shown}\n", flush=True)
    return 0  # not reached: the watch ends with Ctrl-C


def refreshes(
    render: Callable[[], str], interval_s: float, rounds: int | None = None
) -> Iterator[str]:
    """`render()` now and then every `interval_s`, `rounds` times (None: for ever)."""
    done = 0
    while rounds is None or done < rounds:
        started = time.monotonic()
        yield render()
        done += 1
        if rounds is None or done < rounds:
            time.sleep(max(0.0, interval_s - (time.monotonic() - started)))


def _render(args: argparse.Namespace, channel: grpc.Channel) -> str:
    """The table (or the JSON document) of the figures now."""
    from modelyard_client.errors import remote_errors
    from modelyard_client.v1 import gateway_pb2, gateway_pb2_grpc

    stub = gateway_pb2_grpc.GatewayServiceStub(channel)
    messages: Sequence[Message]
    with remote_errors():
        if args.providers:
            providers = stub.GetProviderMetrics(
                gateway_pb2.GetProviderMetricsRequest(), timeout=10
            ).providers
            messages, lines = providers, provider_table(list(providers))
        else:
            models = stub.GetModelMetrics(
                gateway_pb2.GetModelMetricsRequest(model=args.model), timeout=10
            ).models
            messages, lines = models, model_table(list(models))
    return json_document(messages) if args.json else "\n".join(lines)


_COLUMNS = [
    "requests",
    "errors",
    "error_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "tokens/s",
    "req/s",
    "usd/request",
]


def _figures(f: gateway_pb2.WindowFigures) -> list[str]:
    return [
        str(f.requests),
        str(f.errors),
        f"{f.error_rate * 100:.1f} %",
        f"{f.latency_ms_p50:.1f}",
        f"{f.latency_ms_p95:.1f}",
        f"{f.latency_ms_p99:.1f}",
        f"{f.ttft_ms_p50:.1f}",
        f"{f.ttft_ms_p95:.1f}",
        f"{f.tokens_per_second:.1f}",
        f"{f.requests_per_second:.2f}",
        f"{f.cost_per_request_usd:.6f}",
    ]


def model_table(models: list[gateway_pb2.ModelMetrics]) -> list[str]:
    """A row per model, and under it one per deployment with attempts in the window
    (``  @endpoint``)."""
    if not models:
        return ["no models"]
    window = max(m.figures.window_s for m in models)
    rows = [["model", "provider", *_COLUMNS]]
    for m in models:
        rows.append([m.model_id, m.provider, *_figures(m.figures)])
        for d in m.deployments:
            rows.append([f"  @{d.endpoint}", "", *_figures(d.figures)])
    return [f"window: the last {window:.0f}s", *_table(rows)]


def provider_table(providers: list[gateway_pb2.ProviderMetrics]) -> list[str]:
    """A row per provider: its models' attempts together."""
    if not providers:
        return ["no providers"]
    window = max(p.figures.window_s for p in providers)
    rows = [["provider", "models", *_COLUMNS]]
    for p in providers:
        rows.append([p.provider or "-", str(len(p.model_ids)), *_figures(p.figures)])
    return [f"window: the last {window:.0f}s", *_table(rows)]


def _table(rows: list[list[str]]) -> list[str]:
    """The first two columns left-aligned, the figures right-aligned, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _interval(text: str) -> float:
    """An argparse type: a refresh interval in seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value
