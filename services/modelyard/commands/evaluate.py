"""`modelyard eval SUITE MODEL...`: run an evaluation suite on models through a gateway.

SUITE is a suite modelyard ships (``basics``) or a YAML file of one (read here, sent
whole: `modelyard.evaluation.suites`). Every case runs on every model (``--concurrency``
at once, 4 by default) and each model's mean score is stored as its quality in the
registry (``--dry-run``: scored only), where selection reads it. Prints a row per case
and model (score, latency, why), then each model's score; ``--json`` the response as the
proto has it. Needs an admin key where keys are required.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.commands.client_options import add_address, add_json, json_document

if TYPE_CHECKING:
    from modelyard_client.v1 import gateway_pb2

TIMEOUT_S = 3600.0  # a suite on a slow local model takes minutes


def register(sub: Any) -> None:
    """Add ``eval`` to the CLI's subparsers."""
    evaluate = sub.add_parser(
        "eval", help="run an evaluation suite on models; store each model's quality"
    )
    evaluate.add_argument("suite", help="a shipped suite's name (basics) or a suite YAML file")
    evaluate.add_argument("models", nargs="+", help="catalog ids or aliases")
    evaluate.add_argument("--concurrency", type=int, default=0, help="cases at once (4)")
    evaluate.add_argument(
        "--dry-run", action="store_true", help="score only: store no quality in the registry"
    )
    add_address(evaluate)
    add_json(evaluate)
    evaluate.set_defaults(run=run_eval)


def request_of(args: argparse.Namespace) -> gateway_pb2.EvaluateModelRequest:
    """The EvaluateModelRequest the arguments ask for; a suite file is sent whole."""
    from modelyard.evaluation.suites import suite_from_yaml
    from modelyard_client.v1 import gateway_pb2

    request = gateway_pb2.EvaluateModelRequest(
        models=args.models, concurrency=max(args.concurrency, 0), dry_run=args.dry_run
    )
    path = Path(args.suite)
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            text = path.read_text()
        except OSError as exc:
            raise SystemExit(f"modelyard eval: {path}: {exc.strerror or exc}") from None
        request.inline.CopyFrom(suite_from_yaml(text, str(path)))
    else:
        request.suite = args.suite
    return request


def run_eval(args: argparse.Namespace) -> int:
    from modelyard.security.client_channel import channel_for
    from modelyard_client.errors import remote_errors
    from modelyard_client.v1 import gateway_pb2_grpc

    request = request_of(args)
    with channel_for(args) as channel, remote_errors():
        response = gateway_pb2_grpc.GatewayServiceStub(channel).EvaluateModel(
            request, timeout=TIMEOUT_S
        )
    print(json_document([response]) if args.json else "\n".join(lines_of(response)))
    return 0


def lines_of(response: gateway_pb2.EvaluateModelResponse) -> list[str]:
    lines = [f"suite {response.suite}"]
    for model in response.models:
        for case in model.cases:
            why = f"{case.error}: {case.detail}" if case.error else case.detail
            lines.append(
                f"  {model.model_id}  {case.case_id}  {case.score:.2f}  "
                f"{case.latency_ms:.0f} ms  {why}"
            )
    for model in response.models:
        stored = "stored as its quality" if model.stored else "not stored"
        lines.append(f"{model.model_id}: {model.score:.3f} ({len(model.cases)} cases, {stored})")
    return lines
