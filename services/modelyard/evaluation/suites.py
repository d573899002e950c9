"""An evaluation suite: one shipped in ``suites/`` by name, or given whole; checked before
any case runs, each problem an `InvalidRequest` naming the field.

A suite file is YAML with the fields of `modelyard.v1.EvaluationSuite`: ``name``,
``judge_model`` and ``cases`` (each with ``id``, ``prompt``, ``system``, ``scorer``,
``expected``, ``tolerance``, ``latency_budget_ms``, ``max_tokens``, ``weight``).
"""

from __future__ import annotations

import json
import math
import re
from importlib.resources import files
from typing import Any, Final

import jsonschema
import yaml

from modelyard.evaluation.scorers import SCORERS
from modelyard_client.errors import InvalidRequest, NotFound
from modelyard_client.v1 import gateway_pb2

MAX_CASES: Final = 256
MAX_MODELS: Final = 16
MAX_CONCURRENCY: Final = 16
DEFAULT_CONCURRENCY: Final = 4
DEFAULT_MAX_TOKENS: Final = 64
NAME_CHARS: Final = 128
EXPECTED_CHARS: Final = 65_536
SCORER_CHARS: Final = 16
_SHIPPED = files("modelyard.evaluation").joinpath("suites")
_CASE_FIELDS = {f.name for f in gateway_pb2.EvaluationCase.DESCRIPTOR.fields}


def shipped() -> list[str]:
    """The names of the suites modelyard ships."""
    return sorted(
        p.name.removesuffix(".yaml") for p in _SHIPPED.iterdir() if p.name.endswith(".yaml")
    )


def suite_from_yaml(text: str, where: str) -> gateway_pb2.EvaluationSuite:
    """A suite file's suite (not yet checked: `check_suite`)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{where}: not YAML: {exc}", field="suite") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cases"), list):
        raise InvalidRequest(f"{where}: a suite is a mapping with a 'cases' list", field="suite")
    suite = gateway_pb2.EvaluationSuite(
        name=str(raw.get("name", "")), judge_model=str(raw.get("judge_model", ""))
    )
    for i, item in enumerate(raw["cases"]):
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: cases[{i}] is not a mapping", field=f"cases[{i}]")
        unknown = sorted(set(item) - _CASE_FIELDS)
        if unknown:
            raise InvalidRequest(
                f"{where}: cases[{i}] has unknown fields {unknown}", field=f"cases[{i}]"
            )
        suite.cases.append(_case(item, f"{where}: cases[{i}]"))
    return suite


def _case(item: dict[str, Any], where: str) -> gateway_pb2.EvaluationCase:
    try:
        return gateway_pb2.EvaluationCase(**{k: _typed(k, v) for k, v in item.items()})
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{where}: {exc}", field="cases") from None


def _typed(name: str, value: Any) -> Any:
    kind = gateway_pb2.EvaluationCase.DESCRIPTOR.fields_by_name[name].type
    if kind == 9:  # string
        return str(value)
    if kind == 13:  # uint32
        return int(value)
    return float(value)


def resolve(request: gateway_pb2.EvaluateModelRequest) -> gateway_pb2.EvaluationSuite:
    """The suite `request` names or carries, checked, with the request's own bounds."""
    if not request.models:
        raise InvalidRequest("models must name at least one model", field="models")
    if len(request.models) > MAX_MODELS:
        raise InvalidRequest(
            f"models has {len(request.models)} entries; the limit is {MAX_MODELS}", field="models"
        )
    if request.concurrency > MAX_CONCURRENCY:
        raise InvalidRequest(
            f"concurrency must be at most {MAX_CONCURRENCY}, got {request.concurrency}",
            field="concurrency",
        )
    if request.suite and request.HasField("inline"):
        raise InvalidRequest("give suite or inline, not both", field="suite")
    if request.HasField("inline"):
        suite = request.inline
    elif request.suite:
        suite = _shipped(request.suite)
    else:
        raise InvalidRequest("suite or inline must give the suite to run", field="suite")
    check_suite(suite)
    return suite


def _shipped(name: str) -> gateway_pb2.EvaluationSuite:
    if len(name) > NAME_CHARS or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise InvalidRequest(f"suite {name[:80]!r} is not a suite name", field="suite")
    path = _SHIPPED.joinpath(f"{name}.yaml")
    if not path.is_file():
        raise NotFound(f"no suite '{name}' (shipped: {', '.join(shipped())})")
    return suite_from_yaml(path.read_text(), f"suite '{name}'")


def check_suite(suite: gateway_pb2.EvaluationSuite) -> None:
    """Every case runnable: known scorers, valid patterns and schemas, bounded fields."""
    if not suite.name or len(suite.name) > NAME_CHARS:
        raise InvalidRequest(
            f"a suite's name must be 1-{NAME_CHARS} characters", field="inline.name"
        )
    if not 1 <= len(suite.cases) <= MAX_CASES:
        raise InvalidRequest(
            f"a suite has 1-{MAX_CASES} cases, this one {len(suite.cases)}", field="inline.cases"
        )
    seen: set[str] = set()
    for i, case in enumerate(suite.cases):
        _check_case(case, f"cases[{i}]", suite, seen)


def _check_case(
    case: gateway_pb2.EvaluationCase, where: str, suite: gateway_pb2.EvaluationSuite, seen: set[str]
) -> None:
    def refuse(why: str, name: str) -> InvalidRequest:
        return InvalidRequest(f"{where} ({case.id or 'no id'}): {why}", field=f"{where}.{name}")

    if not case.id or len(case.id) > NAME_CHARS:
        raise refuse(f"id must be 1-{NAME_CHARS} characters", "id")
    if case.id in seen:
        raise refuse("id is used twice", "id")
    seen.add(case.id)
    if not case.prompt.strip():
        raise refuse("prompt must not be empty", "prompt")
    if case.scorer not in SCORERS:
        raise refuse(f"scorer must be one of {', '.join(SCORERS)}", "scorer")
    if len(case.expected) > EXPECTED_CHARS:
        raise refuse(f"expected is over {EXPECTED_CHARS:,} characters", "expected")
    if not (math.isfinite(case.weight) and case.weight >= 0):
        raise refuse("weight must be a finite number >= 0", "weight")
    kind = case.scorer
    if kind in ("exact", "contains", "regex", "judge") and not case.expected:
        raise refuse(f"a {kind} case needs expected", "expected")
    if kind == "regex":
        try:
            re.compile(case.expected)
        except re.error as exc:
            raise refuse(f"expected is not a regular expression: {exc}", "expected") from None
    if kind == "json_schema":
        try:
            jsonschema.Draft202012Validator.check_schema(json.loads(case.expected))
        except (ValueError, jsonschema.SchemaError) as exc:
            raise refuse(f"expected is not a JSON schema: {str(exc)[:200]}", "expected") from None
    if kind == "numeric":
        try:
            float(case.expected)
        except ValueError:
            raise refuse("expected must be a number", "expected") from None
        if not (math.isfinite(case.tolerance) and case.tolerance >= 0):
            raise refuse("tolerance must be a finite number >= 0", "tolerance")
    if kind == "latency" and not (case.latency_budget_ms > 0):
        raise refuse("a latency case needs latency_budget_ms > 0", "latency_budget_ms")
    if kind == "judge" and not suite.judge_model:
        raise refuse("a judge case needs the suite's judge_model", "scorer")
