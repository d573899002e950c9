"""The `modelyard` command: up, serve, models, generate, config check; and routes, swap,
swap-status, swaps, rollback, fallbacks, chat, abtest (start, status, stop), feedback, certs,
keys, audit, usage and stats (`modelyard.commands`). Every client command takes --address;
every listing --json."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.assembly import DEFAULT_ADDRESS, ROLES, Settings, resolve_settings, start_stack
from modelyard.assembly.cores import available_cores
from modelyard.assembly.kinds import not_served
from modelyard.assembly.settings import DEFAULT_HTTP_ADDRESS, DEFAULT_METRICS_ADDRESS
from modelyard.assembly.workers import (
    METRICS_LINE,
    follow_primary,
    primary_settings,
    workers_beside,
)
from modelyard.commands import COMMANDS
from modelyard.commands.client_options import (
    add_address,
    add_json,
    print_error,
    print_json,
)
from modelyard.config import ConfigError
from modelyard.config.unbuilt import notices
from modelyard.discovery.gguf_files import stop_reader_pool
from modelyard.security.client_channel import add_client_tls_flags, channel_for
from modelyard.telemetry import configure_tracing
from modelyard_client.errors import InvalidRequest, ModelyardError
from modelyard_client.scrub import scrub_logging

if TYPE_CHECKING:
    pass

# Exit status of a start-up mistake (a bad flag, variable or file), as argparse uses.
STARTUP_MISTAKE = 2


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
            "--metrics-listen",
            help="host:port of the Prometheus scrape endpoint (/metrics), or 'off' (env "
            f"MODELYARD_METRICS_ADDRESS; default {DEFAULT_METRICS_ADDRESS}: give each process "
            "on one host its own)",
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
    up.add_argument(
        "--workers",
        type=int,
        help="gateway processes sharing the address (SO_REUSEPORT): this one and N - 1 "
        "workers, limits shared through shared memory (default: the cores this process "
        "may use, its CPU affinity within its cgroup's quota)",
    )

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
    serve.add_argument(
        "--forward-to",
        help="address to pass every call for a service not served here to (a gateway "
        "worker's primary)",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="share --listen and --http-listen with other processes (SO_REUSEPORT)",
    )

    models = sub.add_parser("models", help="list the models in the catalog")
    add_address(models)
    add_json(models)

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
    add_address(gen)

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
        return _generate(args)
    except ModelyardError as exc:
        print_error(exc)
        return 1
    except KeyboardInterrupt:
        return 130


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
            "metrics_listen",
        )
    }
    flags["http_default"] = args.command == "up"  # `up` serves the HTTP edge unless told off
    flags["metrics_default"] = True  # every process serves /metrics unless told off
    workers = getattr(args, "workers", 1)
    if workers is None:  # `up` without --workers: a gateway process per core it may use
        workers = available_cores()
    if args.command == "serve":
        flags.update(
            roles=tuple(args.roles),
            registry=args.registry,
            hotswap=args.hotswap,
            advertise=args.advertise,
            forward_to=args.forward_to,
            reuse_port=args.reuse_port,
        )
    elif workers != 1:
        if workers < 1:
            return _startup_mistake(InvalidRequest(f"--workers {workers}: give 1 or more"))
        # Every process on the public port; the workers reach this one on its own.
        flags.update(reuse_port=True, private_listen="127.0.0.1:0")
    try:
        # With workers: the limits, the response cache and each backend's bounds shared.
        settings = primary_settings(resolve_settings(flags), workers)
    except ModelyardError as exc:
        return _startup_mistake(exc)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    scrub_logging()  # no credential in any record, DEBUG too
    for line in notices(settings.config):
        print(f"modelyard: {line}", file=sys.stderr, flush=True)
    try:
        asyncio.run(_run(settings, workers - 1))
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


async def _run(settings: Settings, workers: int = 0) -> None:
    """Serve `settings`; `workers` more gateway processes on its address."""
    from modelyard.server.runtime import on_reload_signal, stop_signal

    stopping = stop_signal()
    provider = configure_tracing("modelyard")
    stack = await start_stack(settings)
    follow_primary(stopping)  # a gateway worker of `up` stops when its primary is gone
    try:
        started = await workers_beside(stack, settings, workers)
    except BaseException:
        await stack.stop(0)
        raise
    if stack.metrics_listener is not None and started.members:
        stack.metrics_listener.workers = started.metrics  # one scrape for every process
    on_reload_signal(stack.reload_secrets)  # SIGHUP: provider keys read again
    models = stack.view.models() if stack.view else []
    print(
        f"modelyard: serving {', '.join(stack.server.service_names)} on {stack.address}", flush=True
    )
    if stack.edge is not None:
        print(f"modelyard: OpenAI-compatible HTTP API at {stack.edge.base_url}", flush=True)
        print(f"modelyard: dashboard at {stack.edge.dashboard_url}", flush=True)
    if stack.metrics_listener is not None:
        print(f"{METRICS_LINE}{stack.metrics_listener.url}", flush=True)
    for worker in started.members:
        print(f"modelyard: gateway worker {worker.number} (pid {worker.pid}) serving", flush=True)
    for entry in models:
        print(f"modelyard:   model {entry.id}", flush=True)
    try:
        await stopping.wait()
        notice_s = min(settings.drain_notice_s, settings.grace_s)
        print(
            f"modelyard: NOT_SERVING; refusing new calls for {notice_s:g}s, then draining "
            f"for up to {settings.grace_s - notice_s:g}s more",
            flush=True,
        )
    finally:
        await started.stop(settings.grace_s)  # their calls still need this process
        await stack.stop(settings.grace_s, settings.drain_notice_s)
        stop_reader_pool()
        if provider is not None:
            provider.shutdown()


def _models(args: argparse.Namespace) -> int:
    from modelyard.enum_values import value_name
    from modelyard_client import remote
    from modelyard_client.channel import CHANNEL_OPTIONS
    from modelyard_client.v1 import common_pb2

    with channel_for(args, CHANNEL_OPTIONS) as channel:
        entries = remote.list_models(channel, timeout_s=10)
    if args.json:
        print_json(entries)
        return 0
    for entry in entries:
        backends = ",".join(d.backend for d in entry.deployments)
        name = value_name(common_pb2.HealthStatus.DESCRIPTOR, entry.health)
        health = name.removeprefix("HEALTH_STATUS_")
        ctx = entry.context_window or "-"
        print(f"{entry.id}\t{backends}\tctx={ctx}\t{health.lower()}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from modelyard_client import remote

    prompt: remote.Prompt = [("user", args.prompt)] if args.chat else args.prompt
    request = remote.generate_request(args.model, prompt, args.max_tokens, args.temperature)
    with channel_for(args) as channel:
        for piece in remote.stream_text(channel, request, timeout_s=600):
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


# ---- hot-swap commands -------------------------------------------------------


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
