"""`modelyard test-provider NAME`: an integration check of one configured provider's engine.

NAME is a backend of the configuration (``model_system.backends.NAME``, from
``--config`` or MODELYARD_CONFIG). Its engine is built as `serve` builds it
(`assembly/kinds.py`) and called directly, not through routing, selection or
a gateway: nothing is registered and no other backend is touched. The checks,
in order, each printed as one PASS, FAIL or SKIP line with its figure or error:

- ``list``: the models the engine serves (at least one);
- ``generate``: one short answer (``--model``, else the first model that generates
  text), with text or a finish reason;
- ``stream``: one stream: the time to its first piece, its final usage and finish
  reason (both required);
- ``unknown-model``: a model the provider has not → the typed ModelNotFound;
- ``context-length``: a prompt longer than the model's context window (when one is
  known; at most `MAX_LONG_PROMPT_TOKENS`) → the typed ContextLengthExceeded;
- ``bad-parameter``: ``top_p`` 2 (the OpenAI, Anthropic and Gemini APIs bound it at
  1) → the typed InvalidRequest, from the engine's own check or as it maps the
  provider's 400.

The exit status is 1 when a check failed (SKIP is not a failure), 2 when the
provider cannot be built; ``--json``: the results as a list of objects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.backends.engine import Engine, Piece
    from modelyard_client.v1 import common_pb2

PROMPT = "List three fruits:\n1."  # a bare question gets an empty answer from some
MAX_TOKENS = 16
CALL_TIMEOUT_S = 120.0  # one check's call
# A longer window is not probed: the prompt would be megabytes on the wire.
MAX_LONG_PROMPT_TOKENS = 300_000
UNKNOWN_MODEL = "modelyard-no-such-model"
MAX_DETAIL = 300  # characters of an error message printed


@dataclass(frozen=True)
class CheckResult:
    check: str
    outcome: str  # PASS, FAIL, SKIP
    detail: str

    def line(self) -> str:
        return f"{self.outcome} {self.check}: {self.detail}"


def register(sub: Any) -> None:
    """Add ``test-provider`` to the CLI's subparsers."""
    check = sub.add_parser(
        "test-provider",
        help="check a configured provider: list, generate, stream, error mapping",
    )
    check.add_argument("name", help="a backend of the configuration (model_system.backends)")
    check.add_argument("--config", type=Path, help="YAML configuration file (env MODELYARD_CONFIG)")
    check.add_argument("--model", help="the model to call (default: its first text model)")
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from modelyard.assembly.settings import resolve_settings
    from modelyard.config import ConfigError
    from modelyard_client.errors import ModelyardError

    async def build_and_check() -> list[CheckResult]:
        engine = await _engine_of(settings, args.name)
        return await check_engine(engine, args.model)

    try:
        settings = resolve_settings({"config": args.config})
        results = asyncio.run(build_and_check())
    except (ConfigError, ModelyardError, LookupError) as exc:
        message = exc.message if isinstance(exc, ModelyardError) else str(exc)
        print(f"modelyard test-provider: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print("\n".join(r.line() for r in results))
    return 1 if any(r.outcome == "FAIL" for r in results) else 0


async def _engine_of(settings: Any, name: str) -> Engine:
    """The engine of the backend `name`, as `serve` builds it (not started)."""
    from modelyard.assembly.plan import plan_backends
    from modelyard.security.secrets import ProviderKeys

    configured = sorted(settings.config.backends)
    if name not in configured:
        raise LookupError(
            f"no backend '{name}' in the configuration; configured: {', '.join(configured)}"
            if configured
            else f"no backend '{name}': the configuration has none (give --config)"
        )
    plans = await plan_backends(settings, ProviderKeys.for_config(settings.config))
    plan = next((p for p in plans if p.name == name), None)
    if plan is None:
        raise LookupError(f"backend '{name}' is not active (disabled, or its key is not set)")
    if plan.not_served or plan.kind.engine is None:
        raise LookupError(f"backend {plan.not_served}")
    engine = plan.kind.engine(plan)
    if engine is None:
        raise LookupError(f"backend '{name}' has no engine in this configuration")
    return engine


async def check_engine(engine: Engine, model: str | None = None) -> list[CheckResult]:
    """Every check on `engine` (started here and closed after), in the module's order."""
    from modelyard_client.errors import ModelyardError

    results: list[CheckResult] = []
    try:
        await engine.start()
    except ModelyardError as exc:
        return [CheckResult("start", "FAIL", _error(exc))]
    try:
        await _checks(engine, model, results)
    finally:
        await engine.close()
    return results


async def _checks(engine: Engine, model: str | None, results: list[CheckResult]) -> None:
    from modelyard_client.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound
    from modelyard_client.v1 import common_pb2

    entries = engine.models()
    if not entries:
        reason = engine.health().reason  # an upstream it could not list, say
        why = f"the engine serves no model ({reason})" if reason else "the engine serves no model"
        results.append(CheckResult("list", "FAIL", why))
        return
    names = [e.id for e in entries]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    results.append(CheckResult("list", "PASS", f"{len(names)} models: {shown}"))
    entry = _model_to_call(entries, model)
    if entry is None:
        why = f"'{model}' is not among them" if model else "none of them generates text"
        results.append(CheckResult("generate", "FAIL", why))
        return
    params = common_pb2.GenerationParams(max_tokens=MAX_TOKENS, temperature=0.0)
    prompt = common_pb2.Input(text=PROMPT)

    async def generate() -> str:
        pieces = await _collect(engine, entry.id, prompt, params)
        text = "".join(p.text for p in pieces).strip()
        last = pieces[-1] if pieces else None
        if not text and (last is None or not last.finish_reason):
            raise AssertionError("no text and no finish reason")
        return f"{entry.id} answered {text[:60]!r} ({len(pieces)} pieces)"

    async def stream() -> str:
        started = time.perf_counter()
        first_at = 0.0
        last: Piece | None = None
        async for piece in engine.infer_stream(entry.id, prompt, params):
            if not first_at:
                first_at = time.perf_counter()
            last = piece
        if last is None or not last.finish_reason:
            raise AssertionError("the stream ended without a finish reason")
        if not last.output_tokens and not last.input_tokens:
            raise AssertionError("the stream's last piece carries no usage")
        reason = common_pb2.FinishReason.Name(last.finish_reason).removeprefix("FINISH_REASON_")
        return (
            f"first piece after {(first_at - started) * 1000:.0f} ms, usage "
            f"{last.input_tokens} in / {last.output_tokens} out, finish {reason.lower()}"
        )

    await _run(results, "generate", generate)
    await _run(results, "stream", stream)

    head = entry.id.split("/", 1)[0]
    unknown = f"{head}/{UNKNOWN_MODEL}"
    await _run(
        results,
        "unknown-model",
        _refused(engine, unknown, prompt, params, ModelNotFound),
    )
    window = entry.context_window
    if not window or window > MAX_LONG_PROMPT_TOKENS:
        results.append(
            CheckResult(
                "context-length",
                "SKIP",
                f"{entry.id}'s context window is "
                + (f"{window} tokens, too long to fill" if window else "not known"),
            )
        )
    else:
        # "word " is one token or more in every tokenizer: the prompt overflows the window.
        long_prompt = common_pb2.Input(text="word " * (window + 64))
        await _run(
            results,
            "context-length",
            _refused(engine, entry.id, long_prompt, params, ContextLengthExceeded),
        )
    bad = common_pb2.GenerationParams(max_tokens=MAX_TOKENS, top_p=2.0)
    await _run(results, "bad-parameter", _refused(engine, entry.id, prompt, bad, InvalidRequest))


def _model_to_call(
    entries: list[common_pb2.ModelEntry], model: str | None
) -> common_pb2.ModelEntry | None:
    from modelyard_client.v1 import common_pb2

    if model:
        return next((e for e in entries if e.id == model or e.id.endswith(f"/{model}")), None)
    text = (common_pb2.CAPABILITY_TEXT_GENERATION, common_pb2.CAPABILITY_CHAT)
    return next((e for e in entries if any(c in text for c in e.capabilities)), None)


async def _collect(
    engine: Engine, model_id: str, model_input: common_pb2.Input, params: Any
) -> list[Piece]:
    async def pieces() -> list[Piece]:
        return [p async for p in engine.infer_stream(model_id, model_input, params)]

    return await asyncio.wait_for(pieces(), CALL_TIMEOUT_S)


def _refused(
    engine: Engine,
    model_id: str,
    model_input: common_pb2.Input,
    params: Any,
    expected: type[Exception],
) -> Callable[[], Awaitable[str]]:
    """A check that the call is refused with `expected` (a modelyard error type)."""
    from modelyard_client.errors import ModelyardError

    async def check() -> str:
        try:
            pieces = await _collect(engine, model_id, model_input, params)
        except expected as exc:
            assert isinstance(exc, ModelyardError)
            return _error(exc)
        raise AssertionError(
            f"answered ({len(pieces)} pieces) where {expected.__name__} was expected"
        )

    return check


async def _run(results: list[CheckResult], name: str, check: Callable[[], Awaitable[str]]) -> None:
    from modelyard_client.errors import ModelyardError

    try:
        detail = await check()
    except AssertionError as exc:
        results.append(CheckResult(name, "FAIL", str(exc)))
    except ModelyardError as exc:
        results.append(CheckResult(name, "FAIL", _error(exc)))
    except TimeoutError:
        results.append(CheckResult(name, "FAIL", f"no answer within {CALL_TIMEOUT_S:.0f} s"))
    else:
        results.append(CheckResult(name, "PASS", detail))


def _error(exc: Any) -> str:
    """The error's type, reason and message on one line (an upstream's may span many)."""
    message = " ".join(str(exc.message).split())
    if len(message) > MAX_DETAIL:
        message = message[: MAX_DETAIL - 3] + "..."
    return f"{type(exc).__name__} ({exc.reason}): {message}"
