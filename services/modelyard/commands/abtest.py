"""`modelyard abtest start|status|stop` and `modelyard feedback`: A/B tests on an alias,
through the hot-swap service, and the scores the 'score' metric compares.

`abtest start` exits 0 once the test started (or, with ``--watch``, once it ended) and
REFUSED when the service refused it; `abtest status` prints one test in detail or every
test in a table (``--json``: the tests as the proto has them).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from modelyard.commands.client_options import (
    REFUSAL_CODES,
    REFUSED,
    add_address,
    add_json,
    non_negative,
    print_error,
    print_json,
)
from modelyard.security.client_channel import channel_for
from modelyard_client.errors import ModelyardError

if TYPE_CHECKING:
    import grpc

    from modelyard_client.v1 import hotswap_pb2

# How often `abtest start --watch` asks for the test's figures, in seconds.
ABTEST_POLL_S = 1.0


def register(sub: Any) -> None:
    """Add ``abtest`` (start, status, stop) and ``feedback`` to the CLI's subparsers."""
    abtest = sub.add_parser("abtest", help="split an alias's calls between models to compare them")
    abtest_sub = abtest.add_subparsers(dest="abtest_command", required=True)
    start = abtest_sub.add_parser(
        "start",
        help="start an A/B test on ALIAS (exit 0: started or followed to its end, 2: refused)",
    )
    start.add_argument("alias", help="an alias with a route: its model is the control")
    start.add_argument(
        "--arm",
        dest="arms",
        type=arm,
        action="append",
        required=True,
        metavar="NAME=MODEL:WEIGHT",
        help="an arm: its name, a catalog id and its share of the calls; 2-4 arms, "
        "weights summing to 1 (e.g. --arm control=local/gemma:0.5)",
    )
    start.add_argument(
        "--metric",
        choices=_METRICS,
        help="what decides the winner (default: latency): lower latency, error rate, "
        "ttft or cost wins; a higher feedback score wins",
    )
    start.add_argument(
        "--alpha",
        type=float,
        default=0.0,
        help="the false-winner rate allowed, in (0, 0.5] (default: hot_swap.ab_tests.alpha)",
    )
    start.add_argument(
        "--min-samples",
        type=non_negative,
        default=0,
        help="results each arm needs before any comparison "
        "(default: hot_swap.ab_tests.min_samples_per_arm)",
    )
    start.add_argument(
        "--max-requests",
        type=non_negative,
        default=0,
        help="end the test after this many calls, winner or not (default: no budget)",
    )
    start.add_argument(
        "--max-duration-ms",
        type=non_negative,
        default=0,
        help="end the test after this long, winner or not (default: no time limit)",
    )
    start.add_argument(
        "--sticky",
        choices=_STICKY,
        help="what keeps a caller on one arm (default: request, each call drawn on its own)",
    )
    start.add_argument(
        "--promote-winner",
        action="store_true",
        help="swap the winner in as the alias's model as soon as the test finds one",
    )
    start.add_argument(
        "--watch",
        action="store_true",
        help="follow the test, printing its figures as they change, until it ends",
    )
    add_address(start)
    start.set_defaults(run=_abtest_start)
    abtest_status = abtest_sub.add_parser(
        "status", help="one A/B test in detail, or every test in a table"
    )
    abtest_status.add_argument("test_id", nargs="?", metavar="ID")
    abtest_status.set_defaults(run=_abtest_status)
    add_address(abtest_status)
    add_json(abtest_status)
    stop = abtest_sub.add_parser("stop", help="end an A/B test: the alias's model serves alone")
    stop.add_argument("test_id", metavar="ID")
    stop.add_argument(
        "--promote-winner",
        action="store_true",
        help="swap the winner in as the alias's model (refused when there is none yet)",
    )
    add_address(stop)
    stop.set_defaults(run=_abtest_stop)

    feedback = sub.add_parser(
        "feedback", help="score an answer an A/B test served (the 'score' metric compares them)"
    )
    feedback.add_argument("request_id")
    feedback.add_argument("score", type=float, help="a finite number; higher is better")
    add_address(feedback)
    feedback.set_defaults(run=_feedback)


_METRICS = ("latency", "error_rate", "ttft", "cost", "score")
# `--sticky` names: StickyBy values without STICKY_BY_, lower case, "-" for "_".
_STICKY = ("request", "conversation", "api-key", "user")


def arm(text: str) -> hotswap_pb2.ABArm:
    """``NAME=MODEL:WEIGHT``, e.g. ``control=local/gemma:0.5``; the weight follows the last
    colon, so a catalog id with a colon in it (``ollama/llama3:8b``) stays whole."""
    from modelyard_client.v1 import hotswap_pb2

    name, equals, rest = text.partition("=")
    model, colon, weight_text = rest.rpartition(":")
    try:
        weight = float(weight_text)
    except ValueError:
        weight = None
    if not (equals and colon and name and model and weight is not None):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=MODEL:WEIGHT (e.g. control=local/gemma:0.5)"
        )
    return hotswap_pb2.ABArm(name=name, model_id=model, weight=weight)


def _abtest_start(args: argparse.Namespace) -> int:
    from modelyard_client import remote
    from modelyard_client.v1 import hotswap_pb2

    request = hotswap_pb2.StartABTestRequest(
        alias=args.alias,
        arms=args.arms,
        metric=args.metric or "",
        alpha=args.alpha,
        min_samples_per_arm=args.min_samples,
        max_requests=args.max_requests,
        max_duration_ms=args.max_duration_ms,
        sticky_by=hotswap_pb2.StickyBy.Value(
            f"STICKY_BY_{(args.sticky or 'unspecified').upper().replace('-', '_')}"
        ),
        promote_winner=args.promote_winner,
    )
    with channel_for(args) as channel:
        try:
            test = remote.start_ab_test(channel, request, timeout_s=10)
        except ModelyardError as exc:
            if exc.code.name not in REFUSAL_CODES:
                raise
            print_error(exc)
            return REFUSED
        print(_abtest_line(test), flush=True)
        for arm in test.arms:
            print(f"  arm {arm.name}: {arm.model_id}, weight {arm.weight:g}", flush=True)
        if not args.watch:
            return 0
        try:
            test = _follow(channel, test)
        except KeyboardInterrupt:
            print(
                f"modelyard: stopped following A/B test {test.id}; it goes on "
                f"(modelyard abtest status {test.id}); to end it: modelyard abtest stop {test.id}",
                file=sys.stderr,
            )
            return 130
    print(_abtest_line(test))
    if test.promotion_swap_id:
        print(f"  promoted by swap {test.promotion_swap_id}")
    return 0


def _follow(channel: grpc.Channel, test: hotswap_pb2.ABTest) -> hotswap_pb2.ABTest:
    """Poll the test about every ABTEST_POLL_S, printing its figures each time they change,
    until it has ended; the test as it ended."""
    from modelyard_client import remote

    shown = _figures_line(test)
    while test.running:
        time.sleep(ABTEST_POLL_S)
        test = remote.get_ab_test(channel, test.id, timeout_s=10)
        line = _figures_line(test)
        if line != shown:
            print(line, flush=True)
            shown = line
    return test


def _abtest_status(args: argparse.Namespace) -> int:
    from modelyard_client import remote

    with channel_for(args) as channel:
        if args.test_id:
            tests = [remote.get_ab_test(channel, args.test_id, timeout_s=10)]
        else:
            tests = remote.list_ab_tests(channel, timeout_s=10)
    if args.json:
        print_json(tests)
        return 0
    lines = _abtest_detail(tests[0]) if args.test_id else _abtest_table(tests)
    for line in lines:
        print(line)
    return 0


def _abtest_stop(args: argparse.Namespace) -> int:
    from modelyard_client import remote

    with channel_for(args) as channel:
        test = remote.stop_ab_test(channel, args.test_id, args.promote_winner, timeout_s=10)
    for line in _abtest_detail(test):
        print(line)
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from modelyard_client import remote

    with channel_for(args) as channel:
        # The service waits up to a second for the call's report to arrive first.
        taken = remote.feedback(channel, args.request_id, args.score, timeout_s=10)
    print(
        f"feedback {args.score:g} for request '{args.request_id}': "
        f"A/B test {taken.ab_test_id}, arm {taken.arm}"
    )
    return 0


# How the A/B test commands print tests: every line they write comes from here.


def _abtest_line(test: hotswap_pb2.ABTest) -> str:
    """``abtest ID: alias 'a' by latency, running``; an ended test says why it ended."""
    state = "running" if test.running else f"ended: {test.ended_reason}"
    return f"abtest {test.id}: alias '{test.alias}' by {test.metric}, {state}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"


def _winner_line(test: hotswap_pb2.ABTest) -> str:
    """``winner: b (confidence 97.1 %)``; ``none yet`` while it runs, ``none`` once ended."""
    winner = test.winner or ("none yet" if test.running else "none")
    return f"winner: {winner} (confidence {_percent(test.confidence)})"


def _metric_figure(metric: str, result: hotswap_pb2.ABArmResult) -> str:
    """The arm's figure on the test's metric, as the watch prints it."""
    if metric == "ttft":
        return f"ttft p50 {result.ttft_ms_p50:.1f} ms"
    if metric == "cost":
        return f"${result.cost_usd_per_request:.6f}/request"
    if metric == "score":
        return f"score {result.mean_score:.3g} ({result.scores})"
    if metric == "error_rate":
        return f"{_percent(result.error_rate)} errors"
    return f"p50 {result.latency_ms_p50:.1f} ms, p95 {result.latency_ms_p95:.1f} ms"


def _figures_line(test: hotswap_pb2.ABTest) -> str:
    """``a: 12 requests, 1 errors, p50 … | b: … | winner: none yet (confidence 40.0 %)``."""
    arms = [
        f"{r.name}: {r.requests} requests, {r.errors} errors, {_metric_figure(test.metric, r)}"
        for r in _results(test)
    ]
    return " | ".join([*arms, _winner_line(test)])


def _results(test: hotswap_pb2.ABTest) -> list[hotswap_pb2.ABArmResult]:
    """Each arm's result in the arms' order (an arm with none yet: zeros)."""
    from modelyard_client.v1 import hotswap_pb2

    by_name = {r.name: r for r in test.results}
    return [
        by_name.get(arm.name) or hotswap_pb2.ABArmResult(name=arm.name, model_id=arm.model_id)
        for arm in test.arms
    ]


def _table(rows: list[list[str]]) -> list[str]:
    """Columns left-aligned to their widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _abtest_detail(test: hotswap_pb2.ABTest) -> list[str]:
    """`abtest status ID`: the test's line, its settings, a row per arm, the winner."""
    from modelyard.enum_values import value_name
    from modelyard_client.v1 import hotswap_pb2

    sticky = value_name(hotswap_pb2.StickyBy.DESCRIPTOR, test.sticky_by)
    settings = [
        f"alpha {test.alpha:g}",
        f"min {test.min_samples_per_arm} samples per arm",
        f"sticky by {sticky.removeprefix('STICKY_BY_').lower().replace('_', '-')}",
        f"max {test.max_requests} requests" if test.max_requests else "no request budget",
        f"max {test.max_duration_ms} ms" if test.max_duration_ms else "no time limit",
    ]
    if test.promote_winner:
        settings.append("promotes its winner")
    weights = {arm.name: arm.weight for arm in test.arms}
    rows = [
        [
            "arm",
            "model",
            "weight",
            "requests",
            "errors",
            "error_rate",
            "p50_ms",
            "p95_ms",
            "ttft_p50_ms",
            "usd_per_request",
            "mean_score",
            "scores",
        ]
    ]
    for r in _results(test):
        rows.append(
            [
                r.name,
                r.model_id,
                f"{weights.get(r.name, 0):g}",
                str(r.requests),
                str(r.errors),
                _percent(r.error_rate),
                f"{r.latency_ms_p50:.1f}",
                f"{r.latency_ms_p95:.1f}",
                f"{r.ttft_ms_p50:.1f}",
                f"{r.cost_usd_per_request:.6f}",
                f"{r.mean_score:.3g}" if r.scores else "-",
                str(r.scores),
            ]
        )
    lines = [_abtest_line(test), f"  {', '.join(settings)}"]
    lines += [f"  {line}" for line in _table(rows)]
    lines.append(f"  {_winner_line(test)}")
    if test.promotion_swap_id:
        lines.append(f"  promoted by swap {test.promotion_swap_id}")
    return lines


def _abtest_table(tests: list[hotswap_pb2.ABTest]) -> list[str]:
    """`abtest status`: a row per test, oldest first."""
    if not tests:
        return ["no A/B tests"]
    rows = [["id", "alias", "metric", "state", "requests", "winner", "confidence", "arms"]]
    for test in tests:
        rows.append(
            [
                test.id,
                test.alias,
                test.metric,
                "running" if test.running else "ended",
                str(sum(r.requests for r in test.results)),
                test.winner or "-",
                _percent(test.confidence),
                ",".join(f"{a.name}={a.model_id}:{a.weight:g}" for a in test.arms),
            ]
        )
    return _table(rows)
