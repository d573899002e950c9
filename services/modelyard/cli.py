"""The `modelyard` command: up, serve, models, generate, config check."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from modelyard.config import default_config, load_config
from modelyard.errors import ModelyardError
from modelyard.stack import DEFAULT_ADDRESS, ROLES, StackOptions, default_data_dir, start_stack
from modelyard.telemetry import configure_tracing


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
            default=os.environ.get("MODELYARD_CONFIG") or None,
            help="YAML configuration file (env MODELYARD_CONFIG; default: none needed)",
        )
        p.add_argument(
            "--listen",
            help=f"host:port to serve on (env MODELYARD_ADDRESS; default {DEFAULT_ADDRESS})",
        )
        p.add_argument(
            "--data-dir", type=Path, help="where the catalog lives (env MODELYARD_DATA_DIR)"
        )
        p.add_argument(
            "--models-dir",
            type=Path,
            help="GGUF files for the local backend (env MODELYARD_MODELS_DIR)",
        )
        p.add_argument(
            "--grace", type=float, help="seconds in-flight calls get to finish on SIGTERM (30)"
        )
        p.add_argument("--log-level", help="env MODELYARD_LOG_LEVEL; default INFO")

    up = sub.add_parser("up", help="run every service on one address (the embedded default)")
    server_flags(up)

    serve = sub.add_parser("serve", help="run some roles in this process (split deployment)")
    server_flags(serve)
    serve.add_argument("roles", nargs="+", choices=ROLES)
    serve.add_argument(
        "--registry",
        default=os.environ.get("MODELYARD_REGISTRY"),
        help="registry address when it runs elsewhere (env MODELYARD_REGISTRY)",
    )
    serve.add_argument(
        "--advertise",
        default=os.environ.get("MODELYARD_ADVERTISE"),
        help="address other services use to reach this one's backends",
    )

    models = sub.add_parser("models", help="list the models in the catalog")
    models.add_argument("--address", default=_address_default())

    gen = sub.add_parser("generate", help="stream a model's answer to the terminal")
    gen.add_argument("model")
    gen.add_argument("prompt")
    gen.add_argument("--max-tokens", type=int, default=128)
    gen.add_argument("--chat", action="store_true", help="send the prompt as a user message")
    gen.add_argument("--address", default=_address_default())

    config = sub.add_parser("config", help="work with a configuration file")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check", help="validate FILE without starting anything (exit 1: invalid, 2: unreadable)"
    )
    check.add_argument("file", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("up", "serve"):
            return _serve(args)
        if args.command == "config":
            return _config_check(args)
        if args.command == "models":
            return _models(args)
        return _generate(args)
    except ModelyardError as exc:
        print(f"modelyard: {exc.message} [{exc.code.name}]", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else default_config()
    env = os.environ.get
    log_level = args.log_level or env("MODELYARD_LOG_LEVEL") or config.server.log_level
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    models_dir = args.models_dir or env("MODELYARD_MODELS_DIR")
    opts = StackOptions(
        listen=args.listen or env("MODELYARD_ADDRESS") or config.server.listen,
        data_dir=args.data_dir
        or (default_data_dir() if env("MODELYARD_DATA_DIR") else None)
        or config.server.data_dir
        or default_data_dir(),
        models_dir=Path(models_dir) if models_dir else None,
        config=config,
        # round_robin, least_loaded, p2c, cost_optimized or region_affinity
        balancing=env("MODELYARD_BALANCING") or "least_loaded",
        region=env("MODELYARD_REGION") or "",
    )
    if args.command == "serve":
        opts.roles = tuple(args.roles)
        opts.registry_address = args.registry
        opts.advertise = args.advertise
    grace = args.grace if args.grace is not None else config.server.grace_period
    asyncio.run(_run(opts, grace))
    return 0


async def _run(opts: StackOptions, grace_s: float) -> None:
    from modelyard.server.runtime import wait_for_stop_signal

    provider = configure_tracing("modelyard")
    stack = await start_stack(opts)
    models = stack.view.models() if stack.view else []
    print(
        f"modelyard: serving {', '.join(stack.server.service_names)} on {stack.address}", flush=True
    )
    for entry in models:
        print(f"modelyard:   model {entry.id}", flush=True)
    try:
        await wait_for_stop_signal()
        print(f"modelyard: draining for up to {grace_s:g}s", flush=True)
    finally:
        await stack.stop(grace_s)
        if provider is not None:
            provider.shutdown()


def _models(args: argparse.Namespace) -> int:
    from modelyard.v1 import common_pb2
    from modelyard_client import GatewayClient

    with GatewayClient(args.address, timeout_s=10) as client:
        for entry in client.models():
            backends = ",".join(d.backend for d in entry.deployments)
            health = common_pb2.HealthStatus.Name(entry.health).removeprefix("HEALTH_STATUS_")
            ctx = entry.context_window or "-"
            print(f"{entry.id}\t{backends}\tctx={ctx}\t{health.lower()}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from modelyard_client import GatewayClient

    prompt: str | list[tuple[str, str]] = [("user", args.prompt)] if args.chat else args.prompt
    with GatewayClient(args.address) as client:
        for piece in client.stream(args.model, prompt, max_tokens=args.max_tokens):
            sys.stdout.write(piece)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
