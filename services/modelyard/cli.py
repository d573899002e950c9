"""The `modelyard` command: up, serve, models, generate, routes, swap, swap-status, rollback,
fallbacks, abtest (start, status, stop), feedback, config check."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.assembly import DEFAULT_ADDRESS, ROLES, Settings, resolve_settings, start_stack
from modelyard.assembly.kinds import not_served
from modelyard.assembly.settings import DEFAULT_HTTP_ADDRESS
from modelyard.commands import COMMANDS
from modelyard.config import ConfigError
from modelyard.config.unbuilt import notices
from modelyard.discovery.gguf_files import stop_reader_pool
from modelyard.errors import ModelyardError
from modelyard.scrub import scrub_logging
from modelyard.security.client_channel import add_client_tls_flags, channel_for
from modelyard.telemetry import configure_tracing

if TYPE_CHECKING:
    import grpc

    from modelyard.v1 import hotswap_pb2

# Exit status of a start-up mistake (a bad flag, variable or file), as argparse uses.
STARTUP_MISTAKE = 2
# Exit status of a call the server refused as a mistake in the request (`swap`,
# `abtest start`).
REFUSED = 2
# How often `abtest start --watch` asks for the test's figures, in seconds.
ABTEST_POLL_S = 1.0


def _address_default() -> str:
    return os.environ.get("MODELYARD_ADDRESS", DEFAULT_ADDRESS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelyard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def server_flags(p: argparse.ArgumentParser) -> None:
        # Each setting: this flag, else its environment variable, else the
        # configuration file, else the built-in default.
        p.add_argument(
            "--config",
            type=Path,
            help="YAML configuration file (env MODELYARD_CONFIG; default: none needed)",
        )
        p.add_argument(
            "--listen",
            help=f"host:port to serve on (env MODELYARD_ADDRESS; default {DEFAULT_ADDRESS})",
        )
        p.add_argument(
            "--health-listen",
            help="host:port of a plaintext listener serving grpc.health.v1 alone, for probes "
            "that speak neither TLS nor keys (env MODELYARD_HEALTH_ADDRESS; default: none)",
        )
        p.add_argument(
            "--http-listen",
            help="host:port of the OpenAI-compatible HTTP API, or 'off' (env "
            f"MODELYARD_HTTP_ADDRESS; default {DEFAULT_HTTP_ADDRESS} for `up`, off for `serve`)",
        )
        p.add_argument(
            "--data-dir", type=Path, help="where the catalog lives (env MODELYARD_DATA_DIR)"
        )
        p.add_argument(
            "--models-dir",
            type=Path,
            help="model files for backends that read them (env MODELYARD_MODELS_DIR; "
            "a backend's own models_dir wins)",
        )
        p.add_argument(
            "--grace", type=float, help="seconds in-flight calls get to finish on SIGTERM (30)"
        )
        p.add_argument(
            "--drain-notice",
            type=float,
            help="seconds a stopping server still accepts connections, NOT_SERVING, before "
            "refusing them; part of --grace (env MODELYARD_DRAIN_NOTICE_S; default 2)",
        )
        p.add_argument(
            "--default-deadline",
            type=float,
            help="seconds a gateway call whose client sets no deadline may take "
            "(env MODELYARD_DEFAULT_DEADLINE_S; default 60)",
        )
        p.add_argument("--log-level", help="env MODELYARD_LOG_LEVEL; default INFO")

    up = sub.add_parser("up", help="run every service on one address (the embedded default)")
    server_flags(up)

    serve = sub.add_parser("serve", help="run some roles in this process (split deployment)")
    server_flags(serve)
    serve.add_argument("roles", nargs="+", choices=ROLES)
    serve.add_argument(
        "--registry", help="registry address when it runs elsewhere (env MODELYARD_REGISTRY)"
    )
    serve.add_argument(
        "--hotswap",
        help="hot-swap service address when it runs elsewhere, for the gateway's routes "
        "(env MODELYARD_HOTSWAP)",
    )
    serve.add_argument(
        "--advertise",
        help="address other services use to reach this one's backends (env MODELYARD_ADVERTISE)",
    )

    models = sub.add_parser("models", help="list the models in the catalog")
    models.add_argument("--address", default=_address_default())

    gen = sub.add_parser("generate", help="stream a model's answer to the terminal")
    gen.add_argument("model")
    gen.add_argument("prompt")
    gen.add_argument("--max-tokens", type=int, default=128)
    gen.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature; 0 picks the likeliest token each time (default: the model's)",
    )
    gen.add_argument("--chat", action="store_true", help="send the prompt as a user message")
    gen.add_argument("--address", default=_address_default())

    routes = sub.add_parser("routes", help="list the routes: which model serves each alias")
    routes.add_argument("--address", default=_address_default())

    swap = sub.add_parser(
        "swap",
        help="move ALIAS to MODEL with no request cut and follow the swap "
        "(exit 0: done, 1: failed or rolled back, 2: refused)",
    )
    swap.add_argument("alias")
    swap.add_argument("model", help="the target: a catalog id")
    swap.add_argument(
        "--grace-ms",
        type=_non_negative,
        default=0,
        help="how long calls running on the previous model get to finish "
        "(default: hot_swap.grace_period_ms)",
    )
    swap.add_argument(
        "--validation-timeout-ms",
        type=_non_negative,
        default=0,
        help="time the target gets per validation prompt (default: hot_swap.validation_timeout_ms)",
    )
    swap.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="a validation prompt the target must answer first; repeatable "
        "(default: one short prompt)",
    )
    swap.add_argument(
        "--canary",
        action="store_true",
        help="after validation, move the calls over in steps (hot_swap.canary.steps), each "
        "judged on live calls against the current model; a regression rolls the swap back",
    )
    swap.add_argument("--address", default=_address_default())

    swap_status = sub.add_parser("swap-status", help="print a swap's status")
    swap_status.add_argument("swap_id")
    swap_status.add_argument("--address", default=_address_default())

    rollback = sub.add_parser(
        "rollback", help="put a swap's previous model back (or stop it before its switch)"
    )
    rollback.add_argument("swap_id")
    rollback.add_argument("--address", default=_address_default())

    fallbacks = sub.add_parser(
        "fallbacks",
        help="set the models an alias's (or a model's) calls fall back to; none: clear the list",
    )
    fallbacks.add_argument("target", help="an alias, or a catalog id (it has a '/')")
    fallbacks.add_argument("models", nargs="*", help="catalog ids or aliases, in the order tried")
    fallbacks.add_argument("--address", default=_address_default())

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
        type=_arm,
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
        type=_non_negative,
        default=0,
        help="results each arm needs before any comparison "
        "(default: hot_swap.ab_tests.min_samples_per_arm)",
    )
    start.add_argument(
        "--max-requests",
        type=_non_negative,
        default=0,
        help="end the test after this many calls, winner or not (default: no budget)",
    )
    start.add_argument(
        "--max-duration-ms",
        type=_non_negative,
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
    start.add_argument("--address", default=_address_default())
    abtest_status = abtest_sub.add_parser(
        "status", help="one A/B test in detail, or every test in a table"
    )
    abtest_status.add_argument("test_id", nargs="?", metavar="ID")
    abtest_status.add_argument("--address", default=_address_default())
    stop = abtest_sub.add_parser("stop", help="end an A/B test: the alias's model serves alone")
    stop.add_argument("test_id", metavar="ID")
    stop.add_argument(
        "--promote-winner",
        action="store_true",
        help="swap the winner in as the alias's model (refused when there is none yet)",
    )
    stop.add_argument("--address", default=_address_default())

    feedback = sub.add_parser(
        "feedback", help="score an answer an A/B test served (the 'score' metric compares them)"
    )
    feedback.add_argument("request_id")
    feedback.add_argument("score", type=float, help="a finite number; higher is better")
    feedback.add_argument("--address", default=_address_default())

    config = sub.add_parser("config", help="work with a configuration file")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check", help="validate FILE without starting anything (exit 1: invalid, 2: unreadable)"
    )
    check.add_argument("file", type=Path)
    for command in COMMANDS:
        command.register(sub)
    add_client_tls_flags(parser)
    return parser


def _non_negative(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {2**32 - 1}")
    return value


_METRICS = ("latency", "error_rate", "ttft", "cost", "score")
# `--sticky` names: StickyBy values without STICKY_BY_, lower case, "-" for "_".
_STICKY = ("request", "conversation", "api-key", "user")


def _arm(text: str) -> hotswap_pb2.ABArm:
    """``NAME=MODEL:WEIGHT``, e.g. ``control=local/gemma:0.5``; the weight follows the last
    colon, so a catalog id with a colon in it (``ollama/llama3:8b``) stays whole."""
    from modelyard.v1 import hotswap_pb2

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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run = getattr(args, "run", None)
        if run is not None:  # a command of `modelyard.commands`
            return int(run(args))
        if args.command in ("up", "serve"):
            return _serve(args)
        if args.command == "config":
            return _config_check(args)
        if args.command == "models":
            return _models(args)
        if args.command == "routes":
            return _routes(args)
        if args.command == "swap":
            return _swap(args)
        if args.command == "swap-status":
            return _swap_status(args)
        if args.command == "rollback":
            return _rollback(args)
        if args.command == "fallbacks":
            return _fallbacks(args)
        if args.command == "abtest":
            return _abtest(args)
        if args.command == "feedback":
            return _feedback(args)
        return _generate(args)
    except ModelyardError as exc:
        print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130


def print_error(exc: ModelyardError) -> None:
    """How every client command reports a server's error: its message and its code."""
    print(f"modelyard: {exc.message} [{exc.code.name}]", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    flags = {
        name: getattr(args, name, None)
        for name in (
            "config",
            "listen",
            "data_dir",
            "models_dir",
            "grace",
            "drain_notice",
            "default_deadline",
            "log_level",
            "http_listen",
            "health_listen",
        )
    }
    flags["http_default"] = args.command == "up"  # `up` serves the HTTP edge unless told off
    if args.command == "serve":
        flags.update(
            roles=tuple(args.roles),
            registry=args.registry,
            hotswap=args.hotswap,
            advertise=args.advertise,
        )
    try:
        settings = resolve_settings(flags)
    except ModelyardError as exc:
        return _startup_mistake(exc)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    scrub_logging()  # no credential in any record, DEBUG too
    for line in notices(settings.config):
        print(f"modelyard: {line}", file=sys.stderr, flush=True)
    try:
        asyncio.run(_run(settings))
    except (ModelyardError, OSError) as exc:
        return _startup_mistake(exc)
    return 0


def _startup_mistake(exc: ModelyardError | OSError) -> int:
    """One clear line per problem on stderr, and the start-up mistake status; no traceback."""
    if isinstance(exc, ConfigError):
        for line in exc.lines():
            print(f"modelyard: {line}", file=sys.stderr)
    else:
        message = exc.message if isinstance(exc, ModelyardError) else str(exc)
        print(f"modelyard: cannot start: {message}", file=sys.stderr)
    return STARTUP_MISTAKE


async def _run(settings: Settings) -> None:
    from modelyard.server.runtime import on_reload_signal, wait_for_stop_signal

    provider = configure_tracing("modelyard")
    stack = await start_stack(settings)
    on_reload_signal(stack.reload_secrets)  # SIGHUP: provider keys read again
    models = stack.view.models() if stack.view else []
    print(
        f"modelyard: serving {', '.join(stack.server.service_names)} on {stack.address}", flush=True
    )
    if stack.edge is not None:
        print(f"modelyard: OpenAI-compatible HTTP API at {stack.edge.base_url}", flush=True)
    for entry in models:
        print(f"modelyard:   model {entry.id}", flush=True)
    try:
        await wait_for_stop_signal()
        notice_s = min(settings.drain_notice_s, settings.grace_s)
        print(
            f"modelyard: NOT_SERVING; refusing new calls for {notice_s:g}s, then draining "
            f"for up to {settings.grace_s - notice_s:g}s more",
            flush=True,
        )
    finally:
        await stack.stop(settings.grace_s, settings.drain_notice_s)
        stop_reader_pool()
        if provider is not None:
            provider.shutdown()


def _models(args: argparse.Namespace) -> int:
    from modelyard import remote
    from modelyard.catalog_limits import CHANNEL_OPTIONS
    from modelyard.enum_values import value_name
    from modelyard.v1 import common_pb2

    with channel_for(args, CHANNEL_OPTIONS) as channel:
        for entry in remote.list_models(channel, timeout_s=10):
            backends = ",".join(d.backend for d in entry.deployments)
            name = value_name(common_pb2.HealthStatus.DESCRIPTOR, entry.health)
            health = name.removeprefix("HEALTH_STATUS_")
            ctx = entry.context_window or "-"
            print(f"{entry.id}\t{backends}\tctx={ctx}\t{health.lower()}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from modelyard import remote

    prompt: remote.Prompt = [("user", args.prompt)] if args.chat else args.prompt
    request = remote.generate_request(args.model, prompt, args.max_tokens, args.temperature)
    with channel_for(args) as channel:
        for piece in remote.stream_text(channel, request, timeout_s=600):
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


# ---- hot-swap commands -------------------------------------------------------

# Codes of a swap the server refused for what the request asked (exit REFUSED); any
# other error (the server unreachable, ...) is reported as every command reports it.
_REFUSAL_CODES = frozenset(
    {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "ALREADY_EXISTS"}
)


def _routes(args: argparse.Namespace) -> int:
    from modelyard import remote

    with channel_for(args) as channel:
        routes = remote.list_routes(channel, timeout_s=10)
    if not routes:
        print("no routes")
    for route in routes:
        print(_route_line(route))
    return 0


def _swap(args: argparse.Namespace) -> int:
    from modelyard import remote
    from modelyard.v1 import hotswap_pb2

    request = hotswap_pb2.SwapRequest(
        alias=args.alias,
        target_model_id=args.model,
        grace_period_ms=args.grace_ms,
        validation_timeout_ms=args.validation_timeout_ms,
        validation_prompts=args.prompt,
        canary=args.canary,
    )
    with channel_for(args) as channel:
        try:
            status = remote.start_swap(channel, request, timeout_s=10)
        except ModelyardError as exc:
            if exc.code.name not in _REFUSAL_CODES:
                raise
            print_error(exc)
            return REFUSED
        print(_swap_line(status), flush=True)
        watch = remote.watch_swap(channel, status.swap_id)
        try:
            for now in watch:
                for line in _watch_lines(status, now):
                    print(line, flush=True)
                status = now
        except KeyboardInterrupt:
            watch.close()  # cancels the watch only: the swap goes on
            swap_id = status.swap_id
            print(
                f"modelyard: stopped following swap {swap_id}; it goes on "
                f"(modelyard swap-status {swap_id}); to undo it: modelyard rollback {swap_id}",
                file=sys.stderr,
            )
            return 130
    print(_swap_line(status))
    return 0 if status.phase == hotswap_pb2.SwapStatus.PHASE_DONE else 1


def _swap_status(args: argparse.Namespace) -> int:
    from modelyard import remote

    with channel_for(args) as channel:
        status = remote.get_swap(channel, args.swap_id, timeout_s=10)
    print(_swap_line(status))
    for step in status.steps:
        print(f"  {_step_line(step)}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from modelyard import remote

    with channel_for(args) as channel:
        print(_swap_line(remote.rollback(channel, args.swap_id, timeout_s=10)))
    return 0


def _fallbacks(args: argparse.Namespace) -> int:
    from modelyard import remote

    alias, model = ("", args.target) if "/" in args.target else (args.target, "")
    with channel_for(args) as channel:
        route = remote.set_fallbacks(channel, alias, model, args.models, timeout_s=10)
    print(_route_line(route))
    return 0


# How the hot-swap commands print routes and swaps: every line they write comes from here.


def _route_line(route: hotswap_pb2.Route) -> str:
    """``chat-default<TAB>local/gemma<TAB>rev=3``; a task type's route is ``task:code``, a
    model's fallback list ``model:<id><TAB>-``; ``fallbacks=a,b`` when there are some."""
    from modelyard.route_keys import TASK_TYPES

    if route.alias:
        name = route.alias
    elif route.for_model:
        name = f"model:{route.for_model}"
    else:
        names = {number: name for name, number in TASK_TYPES.items()}
        name = f"task:{names.get(route.task_type, str(route.task_type))}"
    line = f"{name}\t{route.model_id or '-'}\trev={route.revision}"
    if route.ab_test_id:
        line += f"\tab_test={route.ab_test_id}"
    if route.fallback_models:
        line += f"\tfallbacks={','.join(route.fallback_models)}"
    return line


def _phase(phase: int) -> str:
    from modelyard.enum_values import value_name
    from modelyard.v1 import hotswap_pb2

    return value_name(hotswap_pb2.SwapStatus.Phase.DESCRIPTOR, phase).removeprefix("PHASE_").lower()


def _warm(status: hotswap_pb2.SwapStatus) -> str:
    return f" (warm {status.warm_ms:.0f} ms)" if status.warm_ms else ""


def _swap_line(status: hotswap_pb2.SwapStatus) -> str:
    """``swap ID: alias 'a' x → y, done (warm 12 ms)``, then ``: why`` when the swap says;
    a canary swap in its canary phase adds its share (``, canary 25 %``)."""
    from modelyard.v1 import hotswap_pb2

    line = (
        f"swap {status.swap_id}: alias '{status.alias}' {status.from_model_id or '(none)'} → "
        f"{status.to_model_id}, {_phase(status.phase)}{_warm(status)}"
    )
    if status.phase == hotswap_pb2.SwapStatus.PHASE_CANARY:
        line += f", canary {status.canary_percent:g} %"
    return f"{line}: {status.error}" if status.error else line


def _step_line(step: hotswap_pb2.CanaryStep) -> str:
    """``step 5 %: advance — why`` (the reason gives the figures)."""
    return f"step {step.percent:g} %: {step.decision} — {step.reason}"


def _watch_lines(before: hotswap_pb2.SwapStatus, after: hotswap_pb2.SwapStatus) -> list[str]:
    """What `swap` prints for one status of its watch: the phase change, and for a canary
    swap each share it moves to (``canary 25 %``) and each step decided, in the order they
    happened: into CANARY, the steps (each before the share it led to), out of CANARY."""
    from modelyard.v1 import hotswap_pb2

    canary = hotswap_pb2.SwapStatus.PHASE_CANARY
    moved = after.phase != before.phase
    lines = []
    if moved and after.phase == canary:
        lines.append(_phase_change_line(before, after))
    for step in after.steps[len(before.steps) :]:
        lines.append(_step_line(step))
        if step.decision == "hold":
            lines.append(
                f"held at {step.percent:g} % for a person to decide; "
                f"modelyard rollback {after.swap_id} puts '{after.from_model_id}' back"
            )
    if after.phase == canary and (moved or after.canary_percent != before.canary_percent):
        lines.append(f"canary {after.canary_percent:g} %")
    if moved and after.phase != canary:
        lines.append(_phase_change_line(before, after))
    return lines


def _phase_change_line(before: hotswap_pb2.SwapStatus, after: hotswap_pb2.SwapStatus) -> str:
    """``warming → validating (warm 12 ms)``: the warm time on the change that measured it."""
    warm = _warm(after) if not before.warm_ms else ""
    return f"{_phase(before.phase)} → {_phase(after.phase)}{warm}"


# ---- A/B tests and feedback -------------------------------------------------


def _abtest(args: argparse.Namespace) -> int:
    if args.abtest_command == "start":
        return _abtest_start(args)
    if args.abtest_command == "stop":
        return _abtest_stop(args)
    return _abtest_status(args)


def _abtest_start(args: argparse.Namespace) -> int:
    from modelyard import remote
    from modelyard.v1 import hotswap_pb2

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
            if exc.code.name not in _REFUSAL_CODES:
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
    from modelyard import remote

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
    from modelyard import remote

    with channel_for(args) as channel:
        if args.test_id:
            lines = _abtest_detail(remote.get_ab_test(channel, args.test_id, timeout_s=10))
        else:
            lines = _abtest_table(remote.list_ab_tests(channel, timeout_s=10))
    for line in lines:
        print(line)
    return 0


def _abtest_stop(args: argparse.Namespace) -> int:
    from modelyard import remote

    with channel_for(args) as channel:
        test = remote.stop_ab_test(channel, args.test_id, args.promote_winner, timeout_s=10)
    for line in _abtest_detail(test):
        print(line)
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from modelyard import remote

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
    from modelyard.v1 import hotswap_pb2

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
    from modelyard.v1 import hotswap_pb2

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


def _config_check(args: argparse.Namespace) -> int:
    from modelyard.config import ConfigError, ConfigFileUnreadable, load_config, summary_lines

    try:
        config = load_config(args.file)
    except ConfigFileUnreadable as exc:
        print(f"modelyard: {exc.message}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        lines = exc.lines()
        print(f"{args.file}: {len(lines)} problem(s)", file=sys.stderr)
        for line in lines:
            print(line, file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    for line in summary_lines(config):
        print(f"  {line}")
    for line in [*notices(config), *not_served(config)]:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
